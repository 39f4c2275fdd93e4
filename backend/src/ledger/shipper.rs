//! The shipper: one task per daemon that keeps PostgreSQL in step with this host — heartbeat,
//! outbox rows, fleet settings pulled, and the other hosts' usage of budgeted teams handed to
//! the governor. It retries with backoff while PostgreSQL is away; nothing else waits for it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio_postgres::Client;

use super::{
    LedgerConfig,
    hub::{self, Scope},
    outbox::{self, Backlog},
    pg::{self, PgError},
    sync,
};
use crate::{budget::Governor, store::Store};

/// Rows per upsert statement.
const BATCH: usize = 1000;
/// Time between ticks while all is well (a ledger flush also wakes the shipper).
const TICK: Duration = Duration::from_secs(5);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest time between two pricings of the other hosts' usage (ledger flushes ask sooner).
const FLEET_EVERY: Duration = Duration::from_secs(30);
/// A host id whose heartbeat is older than this may be taken over by another database.
const TAKEOVER_MS: i64 = 10 * 60 * 1000;
/// The backlog's oldest hour older than this raises `corral_ledger_backlog_alarm`.
pub const ALARM_AGE_S: i64 = 6 * 3600;

/// Where shipping stands (`GET /api/v1/host`, `/metrics`, `corral info`).
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub connected: bool,
    pub last_error: Option<String>,
    /// Last successful tick (unix ms).
    pub last_contact_ms: Option<i64>,
    pub backlog: Backlog,
}

impl Status {
    /// Seconds since the start of the oldest hour waiting to be shipped (0: none waits).
    pub fn backlog_age_s(&self, now_s: i64) -> i64 {
        self.backlog.oldest_period.map_or(0, |p| (now_s - p).max(0))
    }

    /// The backlog's oldest hour is more than [`ALARM_AGE_S`] old.
    pub fn alarm(&self, now_s: i64) -> bool {
        self.backlog_age_s(now_s) > ALARM_AGE_S
    }

    /// Whether the last round reached PostgreSQL.
    pub fn up(&self) -> bool {
        self.connected && self.last_error.is_none()
    }
}

/// The shared ledger of one daemon (cheap to clone).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    config: LedgerConfig,
    store: Store,
    governor: Governor,
    /// Meters the teams pulled in (none in tests without metering).
    metering: Option<crate::metering::Metering>,
    /// The team changes this host last failed to apply, with why (logged once each).
    team_errors: Mutex<BTreeMap<String, String>>,
    db_id: String,
    wake: tokio::sync::Notify,
    status: Mutex<Status>,
    /// A connection for API requests (the hub's reads, fleet settings' writes).
    requests: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Ledger {
    /// Turns the outbox on (queueing the ledger so far, the first time).
    pub fn new(
        config: LedgerConfig,
        store: Store,
        governor: Governor,
        metering: Option<crate::metering::Metering>,
    ) -> Result<Self, String> {
        let candidate = crate::auth::secret::new_secret("").map_err(|e| e.to_string())?;
        let db_id = outbox::enable(&store.lock(), &candidate).map_err(|e| e.to_string())?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                config,
                store,
                governor,
                metering,
                team_errors: Mutex::default(),
                db_id,
                wake: tokio::sync::Notify::new(),
                status: Mutex::default(),
                requests: tokio::sync::Mutex::default(),
            }),
        })
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.inner.config
    }

    pub fn status(&self) -> Status {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks for a tick now (the ledger was written). Never blocks.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// A shared connection for requests, opened (and the schema checked) on first use and
    /// after a failure.
    pub async fn client(&self) -> Result<Arc<Client>, PgError> {
        let mut slot = self.inner.requests.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let mut c = pg::connect(&self.inner.config).await?;
        pg::migrate(&mut c).await?;
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Starts the shipper; it ends when `closed` turns true.
    pub fn start(&self, closed: tokio::sync::watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut closed = closed;
            let mut client: Option<Client> = None;
            let mut wait = Duration::ZERO;
            let mut fleet_at: Option<Instant> = None;
            loop {
                let flushed = tokio::select! {
                    _ = closed.wait_for(|c| *c) => return,
                    () = me.inner.wake.notified(), if wait <= TICK => true,
                    () = tokio::time::sleep(wait) => false,
                };
                // The other hosts' usage is what budgets are evaluated against, after each
                // ledger flush: priced again then (or after FLEET_EVERY), not every tick.
                let fleet = flushed || fleet_at.is_none_or(|t| t.elapsed() >= FLEET_EVERY);
                match me.tick(&mut client, fleet).await {
                    Ok(()) => {
                        wait = TICK;
                        if fleet {
                            fleet_at = Some(Instant::now());
                        }
                        let mut s = me.lock_status();
                        s.connected = true;
                        s.last_error = None;
                        s.last_contact_ms = Some(crate::metering::sampler::wall_ms());
                    }
                    Err(e) => {
                        if e.is_closed() {
                            client = None;
                        }
                        wait = (wait * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        let msg = e.describe();
                        let mut s = me.lock_status();
                        if s.last_error.as_deref() != Some(msg.as_str()) {
                            tracing::warn!(error = %msg, ledger = %me.inner.config.display(), "shared ledger unavailable; metering and budgets go on locally");
                        }
                        s.connected = client.is_some();
                        s.last_error = Some(msg);
                    }
                }
            }
        });
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.inner.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store off the async threads.
    async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, PgError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store.lock()))
            .await
            .map_err(|e| PgError::Local(e.to_string()))?
            .map_err(|e| PgError::Local(e.to_string()))
    }

    /// One round: (re)connect and claim the host id, ship the outbox, report, pull the
    /// fleet's settings, and (`fleet`) price the other hosts' usage of budgeted teams.
    async fn tick(&self, client: &mut Option<Client>, fleet: bool) -> Result<(), PgError> {
        if client.is_none() {
            // What waits is this host's to show whether or not PostgreSQL answers (the
            // backlog alarm is for exactly the time it does not).
            self.refresh_backlog().await?;
            let mut c = pg::connect(&self.inner.config).await?;
            pg::migrate(&mut c).await?;
            // Claimed before anything is shipped under the id.
            self.heartbeat(&mut c).await?;
            tracing::info!(ledger = %self.inner.config.display(), host_id = %self.inner.config.host_id, "shared ledger connected");
            *client = Some(c);
        }
        let Some(c) = client.as_mut() else {
            return Ok(());
        };
        let host = self.inner.config.host_id.clone();
        // Oldest change first, in batches; each acknowledged only after PostgreSQL committed
        // it.
        loop {
            let rows = self.blocking(|c| outbox::pending(c, BATCH)).await?;
            if rows.is_empty() {
                break;
            }
            pg::ship(c, &host, &rows).await?;
            self.fault("ledger-shipped");
            let n = rows.len();
            self.blocking(move |c| {
                outbox::acknowledge(c, &rows, crate::metering::sampler::wall_ms())
            })
            .await?;
            if n < BATCH {
                break;
            }
        }
        self.refresh_backlog().await?;
        self.heartbeat(c).await?;
        self.pull(c).await?;
        if fleet {
            self.fleet_usage(c).await?;
        }
        Ok(())
    }

    async fn refresh_backlog(&self) -> Result<(), PgError> {
        let backlog = self.blocking(outbox::backlog).await?;
        self.lock_status().backlog = backlog;
        Ok(())
    }

    /// Reports the backlog last read.
    async fn heartbeat(&self, c: &mut Client) -> Result<(), PgError> {
        let report = pg::Report {
            db_id: self.inner.db_id.clone(),
            api_url: self.inner.config.advertise_url.clone(),
            backlog: self.lock_status().backlog,
        };
        pg::heartbeat(c, &self.inner.config.host_id, &report, TAKEOVER_MS).await
    }

    /// Pulls the fleet's teams, rate card and budgets (pushing local ones PostgreSQL lacks).
    async fn pull(&self, c: &Client) -> Result<(), PgError> {
        let cards = sync::rate_cards(c).await?;
        let budgets = sync::budgets(c).await?;
        let teams = sync::teams(c).await?;
        let local = self.blocking(sync::local).await?;
        let plan = sync::plan(&local, &cards, &budgets, &teams);
        for card in &plan.push_cards {
            sync::put_rate_card(c, card).await?;
        }
        for (team, json) in &plan.push_budgets {
            sync::put_budget(c, team, Some(json)).await?;
        }
        for t in &plan.push_teams {
            sync::put_team(c, t).await?;
        }
        let pools = self.inner.governor.pools().clone();
        let (changed, teams) = self
            .blocking(move |c| {
                let teams = sync::apply_teams(c, &pools, &plan);
                sync::apply(c, &plan).map(|changed| (changed, teams))
            })
            .await?;
        self.teams_pulled(teams).await;
        if changed {
            tracing::info!("fleet rate card or budgets pulled from the shared ledger");
            self.inner.governor.wake();
        }
        Ok(())
    }

    /// Meters the teams a pull created, stops metering those it removed, and logs each team
    /// change this host could not carry out once (until its reason changes).
    async fn teams_pulled(&self, done: sync::TeamsApplied) {
        if let Some(m) = self.inner.metering.clone()
            && !(done.created.is_empty() && done.removed.is_empty())
        {
            let (created, removed) = (done.created.clone(), done.removed.clone());
            let _ = tokio::task::spawn_blocking(move || {
                for t in &created {
                    m.meter_team(t);
                }
                for t in &removed {
                    m.unregister_team(t);
                }
            })
            .await;
        }
        for t in done.created.iter().chain(&done.removed) {
            tracing::info!(team = %t, "team pulled from the shared ledger");
        }
        let mut seen = self
            .inner
            .team_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let failed: BTreeMap<String, String> = done.failed.into_iter().collect();
        for (team, why) in &failed {
            if seen.get(team) != Some(why) {
                tracing::warn!(team = %team, error = %why, "cannot apply the shared ledger's team here; retried every round");
            }
        }
        *seen = failed;
    }

    /// The other hosts' usage of every budgeted team in its current period, priced with the
    /// (fleet's) rate card, for the governor.
    async fn fleet_usage(&self, c: &Client) -> Result<(), PgError> {
        let gov = self.inner.governor.clone();
        let (periods, cards) = self
            .blocking(move |conn| {
                let periods = gov.budget_periods(conn).map_err(|e| e.to_string())?;
                let cards =
                    crate::metering::billing::rate_cards(conn).map_err(|e| e.to_string())?;
                Ok::<_, String>((periods, cards))
            })
            .await?;
        let now = self.inner.governor.now();
        let mut fleet = BTreeMap::new();
        for (team, start) in periods {
            let scope = Scope {
                team: Some(&team),
                except_host: Some(&self.inner.config.host_id),
                ..Scope::default()
            };
            let by_host = hub::priced(c, &cards, start, now + 1, &scope).await?;
            let mut used = crate::budget::Used::default();
            let mut hosts = 0;
            for r in by_host.values() {
                used.money_micros += r.total.cost.total;
                used.cpu_usec += r.total.usage.cpu_usec;
                used.mem_byte_s += r.total.usage.mem_byte_s;
                hosts += 1;
            }
            fleet.insert(
                team,
                crate::budget::FleetUsage {
                    period_start: start,
                    used,
                    hosts,
                },
            );
        }
        if self.inner.governor.set_fleet(fleet) {
            self.inner.governor.wake();
        }
        Ok(())
    }

    /// The crash tests' point `ledger-shipped` (`<state>/.crash-at`, [`crate::fault`]).
    fn fault(&self, point: &str) {
        crate::fault::crash_point(self.inner.governor.state_dir(), point);
    }
}
