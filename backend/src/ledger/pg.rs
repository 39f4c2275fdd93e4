//! PostgreSQL: the connection (TLS through rustls, verified against `--ledger-ca`), the
//! shared schema, and the statements the shipper, the sync and the hub run.
//!
//! Schema (created by the first daemon that connects, under an advisory lock so hosts that
//! start together do not race; `corral_schema` holds its version):
//! - `corral_hosts`: one row per host id, with the database that ships as it (`db_id`), its
//!   API URL, and the heartbeat, shipped counts and backlog it last reported. Times come
//!   from PostgreSQL's clock, so staleness does not depend on hosts' clocks agreeing.
//! - `corral_usage_hour`: the hourly ledger rows of every host, keyed on (host, container,
//!   hour, team, labels), as each host's SQLite has them; `corral_usage_day` and
//!   `corral_usage_month` roll them up (UTC days and months), kept by the statement
//!   triggers `corral_usage_rollup_{insert,update}` in each shipment's transaction, so a
//!   statement over a year reads months, days at its edges and hours only at its ends
//!   ([`GRAINS`]).
//! - `corral_rate_card`, `corral_team_budgets`, `corral_teams`: the fleet's prices, budgets
//!   and team definitions (name, description, pooled ceilings; a removed team is kept as a
//!   tombstone) ([`super::sync`]).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{
    Client,
    tls::{ChannelBinding, MakeTlsConnect, TlsConnect},
};
use tokio_rustls::rustls::{ClientConfig, pki_types::ServerName};

use super::{LedgerConfig, SslMode, outbox::Row};
use crate::metering::calendar::Grain;

/// The schema version this build writes (2: day and month rollups of the hourly rows).
pub const SCHEMA_VERSION: i32 = 2;

/// The hourly rows' quantities that add up over time, and the peaks (greatest wins).
const SUMS: [&str; 11] = [
    "duration_ms",
    "cpu_usec",
    "throttled_usec",
    "cpu_reserved_core_usec",
    "mem_byte_s",
    "mem_reserved_byte_s",
    "io_rbytes",
    "io_wbytes",
    "io_rios",
    "io_wios",
    "oom_kills",
];
const PEAKS: [&str; 2] = ["mem_peak", "pids_peak"];

/// The tables holding each grain of the shared ledger, and how a period of that grain is
/// found from an hour's start (`{p}`) in SQL: the rollups are kept by a trigger on the hourly
/// table, in the shipment's own transaction.
pub const GRAINS: [(Grain, &str, &str); 3] = [
    (Grain::Hour, "corral_usage_hour", "{p}"),
    (Grain::Day, "corral_usage_day", "({p} / 86400) * 86400"),
    (
        Grain::Month,
        "corral_usage_month",
        "extract(epoch from date_trunc('month', to_timestamp({p}) AT TIME ZONE 'UTC'))::bigint",
    ),
];

/// The rollup tables, the triggers that keep them, and the statements filling them from the
/// hourly rows (an upgrade from version 1). Statement-level triggers with transition tables:
/// each shipment's rows are grouped by day and month and added in one upsert per rollup —
/// an inserted hour adds its totals, an updated one its growth (shipping only ever grows a
/// row, so no delta is negative; a stale copy adds zero); peaks by `GREATEST`.
fn rollup_schema() -> (String, Vec<String>) {
    let cols: Vec<&str> = SUMS.iter().chain(&PEAKS).copied().collect();
    let mut ddl = String::new();
    let (mut on_insert, mut on_update) = (String::new(), String::new());
    let mut backfill = Vec::new();
    for (_, table, period) in &GRAINS[1..] {
        ddl.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                host_id TEXT NOT NULL, period BIGINT NOT NULL, container_id TEXT NOT NULL,
                team TEXT NOT NULL, labels TEXT NOT NULL, name TEXT NOT NULL, {},
                PRIMARY KEY (host_id, container_id, period, team, labels));
             CREATE INDEX IF NOT EXISTS {table}_team ON {table} (team, period);
             CREATE INDEX IF NOT EXISTS {table}_period ON {table} (period);
             CREATE INDEX IF NOT EXISTS {table}_host ON {table} (host_id, period);\n",
            cols.iter()
                .map(|c| format!("{c} BIGINT NOT NULL"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let set = SUMS
            .iter()
            .map(|c| format!("{c} = t.{c} + excluded.{c}"))
            .chain(
                PEAKS
                    .iter()
                    .map(|c| format!("{c} = GREATEST(t.{c}, excluded.{c})")),
            )
            .collect::<Vec<_>>()
            .join(", ");
        // Rows of `source` (alias `n`) grouped into this rollup's periods and added.
        let add = |source: &str, sum: &dyn Fn(&str) -> String| {
            format!(
                "INSERT INTO {table} AS t (host_id, period, container_id, team, labels, name, {})
                 SELECT host_id, {}, container_id, team, labels, max(n.name), {}
                 FROM {source} GROUP BY 1, 2, 3, 4, 5
                 ON CONFLICT (host_id, container_id, period, team, labels) DO UPDATE SET
                   name = GREATEST(t.name, excluded.name), {set};\n",
                cols.join(", "),
                period.replace("{p}", "period"),
                SUMS.iter()
                    .map(|c| sum(c))
                    .chain(PEAKS.iter().map(|c| format!("max(n.{c})")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let total = |c: &str| format!("sum(n.{c})::bigint");
        on_insert.push_str(&add("n", &total));
        // An update's growth: its new rows minus its old ones, summed (no join: the
        // transition tables have no index, and a join of them is quadratic).
        let rows = |sign: &str, from: &str| {
            format!(
                "SELECT host_id, period, container_id, team, labels, name, {}, {} FROM {from}",
                SUMS.iter()
                    .map(|c| format!("{sign}{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                PEAKS.join(", ")
            )
        };
        on_update.push_str(&add(
            &format!("({} UNION ALL {}) n", rows("", "n"), rows("-", "o")),
            &total,
        ));
        backfill.push(add("corral_usage_hour n", &total));
    }
    ddl.push_str(&format!(
        "CREATE OR REPLACE FUNCTION corral_usage_rollup_insert() RETURNS trigger
           LANGUAGE plpgsql AS $f$ BEGIN {on_insert} RETURN NULL; END $f$;
         CREATE OR REPLACE FUNCTION corral_usage_rollup_update() RETURNS trigger
           LANGUAGE plpgsql AS $f$ BEGIN {on_update} RETURN NULL; END $f$;
         DO $d$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'corral_usage_hour'::regclass
                          AND tgname = 'corral_usage_rollup_insert') THEN
             CREATE TRIGGER corral_usage_rollup_insert AFTER INSERT ON corral_usage_hour
               REFERENCING NEW TABLE AS n
               FOR EACH STATEMENT EXECUTE FUNCTION corral_usage_rollup_insert();
           END IF;
           IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'corral_usage_hour'::regclass
                          AND tgname = 'corral_usage_rollup_update') THEN
             CREATE TRIGGER corral_usage_rollup_update AFTER UPDATE ON corral_usage_hour
               REFERENCING OLD TABLE AS o NEW TABLE AS n
               FOR EACH STATEMENT EXECUTE FUNCTION corral_usage_rollup_update();
           END IF;
         END $d$;\n"
    ));
    (ddl, backfill)
}

/// Why talking to PostgreSQL failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The cause, e.g. a refused certificate, is the source ([`PgError::describe`]).
    #[error("PostgreSQL")]
    Db(#[from] tokio_postgres::Error),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    #[error(
        "host id {host_id:?} is shipped by another database (db {other}) that reported {age_s} s \
         ago; give this host its own --host-id"
    )]
    HostIdTaken {
        host_id: String,
        other: String,
        age_s: i64,
    },
    #[error("the shared ledger's schema is version {0}, newer than this build's; upgrade corral")]
    NewerSchema(i32),
    #[error("local store: {0}")]
    Local(String),
    /// A row the shared ledger holds does not decode.
    #[error("shared ledger data: {0}")]
    Data(String),
}

impl PgError {
    /// The error with its causes (a TLS refusal names the certificate problem), for logs and
    /// the ledger state an admin reads.
    pub fn describe(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(&format!(": {s}"));
            source = s.source();
        }
        out
    }

    /// Whether the connection itself is gone (reconnect), as opposed to a refused statement.
    pub fn is_closed(&self) -> bool {
        match self {
            PgError::Db(e) => e.is_closed() || e.as_db_error().is_none(),
            PgError::Tls(_) => true,
            _ => false,
        }
    }
}

/// Connects (5 s timeout) and spawns the connection's driver.
pub async fn connect(cfg: &LedgerConfig) -> Result<Client, PgError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&cfg.host)
        .port(cfg.port)
        .user(&cfg.user)
        .dbname(&cfg.dbname)
        .application_name("corral")
        // `CREATE … IF NOT EXISTS` of a schema that exists is not worth a log line per connect.
        .options("-c client_min_messages=warning")
        .connect_timeout(std::time::Duration::from_secs(5))
        .keepalives_idle(std::time::Duration::from_secs(30));
    if let Some(p) = &cfg.password {
        pg.password(p);
    }
    let client = match cfg.ssl {
        SslMode::Disable => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
            drive(conn);
            client
        }
        SslMode::Verify => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let config = crate::tls::client_config(&cfg.ca).map_err(PgError::Tls)?;
            let (client, conn) = pg.connect(Rustls(Arc::new(config))).await?;
            drive(conn);
            client
        }
    };
    Ok(client)
}

/// Runs a connection's I/O until it ends (the client's requests then fail as closed).
fn drive(conn: impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "ledger connection ended");
        }
    });
}

/// tokio-postgres' TLS hooks over tokio-rustls.
#[derive(Clone)]
struct Rustls(Arc<ClientConfig>);

struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> MakeTlsConnect<S> for Rustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            config: self.0.clone(),
            name,
        })
    }
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(s)))
        })
    }
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (libpq's default `channel_binding=prefer` falls back to
        // it as well); the server's certificate is verified, which is what binds the session.
        ChannelBinding::none()
    }
}

/// Lock id of schema changes (any constant: "corral" in ASCII).
const SCHEMA_LOCK: i64 = 0x636f_7272_616c;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS corral_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS corral_hosts (
    host_id        TEXT PRIMARY KEY,
    db_id          TEXT NOT NULL,
    api_url        TEXT,
    version        TEXT NOT NULL,
    registered_ms  BIGINT NOT NULL,
    heartbeat_ms   BIGINT NOT NULL,
    shipped_rows   BIGINT NOT NULL DEFAULT 0,
    backlog_rows   BIGINT NOT NULL DEFAULT 0,
    backlog_oldest BIGINT,
    last_ship_ms   BIGINT
);
CREATE TABLE IF NOT EXISTS corral_usage_hour (
    host_id                TEXT NOT NULL,
    period                 BIGINT NOT NULL,
    container_id           TEXT NOT NULL,
    team                   TEXT NOT NULL,
    labels                 TEXT NOT NULL,
    name                   TEXT NOT NULL,
    duration_ms            BIGINT NOT NULL,
    cpu_usec               BIGINT NOT NULL,
    throttled_usec         BIGINT NOT NULL,
    cpu_reserved_core_usec BIGINT NOT NULL,
    mem_byte_s             BIGINT NOT NULL,
    mem_reserved_byte_s    BIGINT NOT NULL,
    io_rbytes              BIGINT NOT NULL,
    io_wbytes              BIGINT NOT NULL,
    io_rios                BIGINT NOT NULL,
    io_wios                BIGINT NOT NULL,
    oom_kills              BIGINT NOT NULL,
    mem_peak               BIGINT NOT NULL,
    pids_peak              BIGINT NOT NULL,
    shipped_ms             BIGINT NOT NULL,
    PRIMARY KEY (host_id, container_id, period, team, labels)
);
CREATE INDEX IF NOT EXISTS corral_usage_hour_team ON corral_usage_hour (team, period);
CREATE INDEX IF NOT EXISTS corral_usage_hour_period ON corral_usage_hour (period);
CREATE INDEX IF NOT EXISTS corral_usage_hour_host ON corral_usage_hour (host_id, period);
CREATE TABLE IF NOT EXISTS corral_rate_card (
    effective_from                 BIGINT PRIMARY KEY,
    currency                       TEXT NOT NULL,
    cpu_core_hour_used_micros      BIGINT NOT NULL,
    cpu_core_hour_reserved_micros  BIGINT NOT NULL,
    mem_gib_hour_used_micros       BIGINT NOT NULL,
    mem_gib_hour_reserved_micros   BIGINT NOT NULL,
    io_gib_micros                  BIGINT NOT NULL,
    created_at_ms                  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS corral_team_budgets (
    team       TEXT PRIMARY KEY,
    budget     TEXT,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS corral_teams (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    limits      TEXT NOT NULL,
    deleted     BOOLEAN NOT NULL,
    updated_ms  BIGINT NOT NULL
);
";

/// PostgreSQL's clock, ms.
pub const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Creates the shared schema when missing; refuses a newer one.
pub async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(SCHEMA).await?;
    let v: Option<i32> = tx
        .query_opt("SELECT max(version) FROM corral_schema", &[])
        .await?
        .and_then(|r| r.get(0));
    if let Some(v) = v
        && v > SCHEMA_VERSION
    {
        return Err(PgError::NewerSchema(v));
    }
    let (rollups, backfill) = rollup_schema();
    tx.batch_execute(&rollups).await?;
    match v {
        Some(v) if v >= SCHEMA_VERSION => {}
        old => {
            // Version 1 had no rollups: they start as the sums of the hourly rows (the
            // trigger already holds the table, so no shipment slips between).
            if old.is_some() {
                fill_rollups(&tx, &backfill).await?;
            }
            tx.execute("DELETE FROM corral_schema", &[]).await?;
            tx.execute("INSERT INTO corral_schema VALUES ($1)", &[&SCHEMA_VERSION])
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn fill_rollups(
    tx: &tokio_postgres::Transaction<'_>,
    backfill: &[String],
) -> Result<(), PgError> {
    tx.execute("DELETE FROM corral_usage_day", &[]).await?;
    tx.execute("DELETE FROM corral_usage_month", &[]).await?;
    for sql in backfill {
        tx.execute(sql.as_str(), &[]).await?;
    }
    Ok(())
}

/// Computes the day and month rollups again from the hourly rows, in one transaction (after a
/// bulk load of hours with the trigger off, as the benchmark does).
pub async fn rebuild_rollups(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("LOCK TABLE corral_usage_hour IN SHARE MODE", &[])
        .await?;
    fill_rollups(&tx, &rollup_schema().1).await?;
    tx.commit().await?;
    Ok(())
}

/// What a host reports with every heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub db_id: String,
    pub api_url: Option<String>,
    pub backlog: super::outbox::Backlog,
}

/// Registers this host or refreshes its heartbeat. A host id held by another database whose
/// heartbeat is younger than `takeover_ms` is refused (two machines named alike would merge
/// their bills); an older one is taken over (a host rebuilt with a new disk).
pub async fn heartbeat(
    client: &mut Client,
    host_id: &str,
    r: &Report,
    takeover_ms: i64,
) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT db_id, {NOW_MS} - heartbeat_ms FROM corral_hosts WHERE host_id = $1 \
                 FOR UPDATE"
            ),
            &[&host_id],
        )
        .await?;
    if let Some(row) = row {
        let (db, age): (String, i64) = (row.get(0), row.get(1));
        if db != r.db_id && age < takeover_ms {
            return Err(PgError::HostIdTaken {
                host_id: host_id.to_owned(),
                other: db,
                age_s: age / 1000,
            });
        }
    }
    tx.execute(
        &format!(
            "INSERT INTO corral_hosts (host_id, db_id, api_url, version, registered_ms,
               heartbeat_ms, shipped_rows, backlog_rows, backlog_oldest, last_ship_ms)
             VALUES ($1, $2, $3, $4, {NOW_MS}, {NOW_MS}, $5, $6, $7, $8)
             ON CONFLICT (host_id) DO UPDATE SET db_id = excluded.db_id,
               api_url = excluded.api_url, version = excluded.version,
               heartbeat_ms = excluded.heartbeat_ms, shipped_rows = excluded.shipped_rows,
               backlog_rows = excluded.backlog_rows, backlog_oldest = excluded.backlog_oldest,
               last_ship_ms = excluded.last_ship_ms"
        ),
        &[
            &host_id,
            &r.db_id,
            &r.api_url,
            &crate::VERSION,
            &r.backlog.shipped_rows,
            &r.backlog.rows,
            &r.backlog.oldest_period,
            &r.backlog.last_ship_ms,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Upserts `rows` of `host_id` in one statement and one transaction. Every column keeps the
/// greater of stored and sent (sums and peaks only grow), so a replay changes nothing.
pub async fn ship(client: &mut Client, host_id: &str, rows: &[Row]) -> Result<(), PgError> {
    if rows.is_empty() {
        return Ok(());
    }
    macro_rules! col {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let period = col!(|r| r.period);
    let id = col!(|r| r.container_id.as_str());
    let team = col!(|r| r.team.as_str());
    let labels = col!(|r| r.labels.as_str());
    let name = col!(|r| r.name.as_str());
    let dur = col!(|r| r.duration_ms);
    let cpu = col!(|r| r.q.cpu_usec);
    let thr = col!(|r| r.q.throttled_usec);
    let res = col!(|r| r.q.cpu_reserved_core_usec);
    let mem = col!(|r| r.q.mem_byte_s);
    let mres = col!(|r| r.q.mem_reserved_byte_s);
    let rb = col!(|r| r.q.io_rbytes);
    let wb = col!(|r| r.q.io_wbytes);
    let ri = col!(|r| r.q.io_rios);
    let wi = col!(|r| r.q.io_wios);
    let oom = col!(|r| r.q.oom_kills);
    let mpeak = col!(|r| r.q.mem_peak);
    let ppeak = col!(|r| r.q.pids_peak);
    let g = |c: &str| format!("{c} = GREATEST(corral_usage_hour.{c}, excluded.{c})");
    let sql = format!(
        "INSERT INTO corral_usage_hour (host_id, period, container_id, team, labels, name,
           duration_ms, cpu_usec, throttled_usec, cpu_reserved_core_usec, mem_byte_s,
           mem_reserved_byte_s, io_rbytes, io_wbytes, io_rios, io_wios, oom_kills, mem_peak,
           pids_peak, shipped_ms)
         SELECT $1, u.*, {NOW_MS} FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[],
           $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
           $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[],
           $17::bigint[], $18::bigint[], $19::bigint[]) AS u
         ON CONFLICT (host_id, container_id, period, team, labels) DO UPDATE SET
           name = excluded.name, {}, shipped_ms = excluded.shipped_ms",
        SUMS.iter()
            .chain(&PEAKS)
            .map(|c| g(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let tx = client.transaction().await?;
    tx.execute(
        &sql,
        &[
            &host_id, &period, &id, &team, &labels, &name, &dur, &cpu, &thr, &res, &mem, &mres,
            &rb, &wb, &ri, &wi, &oom, &mpeak, &ppeak,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
