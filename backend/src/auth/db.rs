//! SQL of the auth tables (migrations/0002_auth.sql). Every function takes a connection and runs
//! on a blocking thread; [`run`] gets one from the store.

use rusqlite::{Connection, OptionalExtension, params};

use super::{AuthError, Role};
use crate::store::Store;

/// Runs `f` with the database connection on a blocking thread.
#[track_caller]
pub fn run<T, F>(store: &Store, f: F) -> impl Future<Output = Result<T, AuthError>> + use<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, AuthError> + Send + 'static,
{
    // The caller's line, for the store's slow-lock log.
    let at = std::panic::Location::caller();
    let store = store.clone();
    async move {
        tokio::task::spawn_blocking(move || {
            let mut conn = store.lock_for(at);
            f(&mut conn)
        })
        .await
        .map_err(|e| AuthError::Internal(format!("database task failed: {e}")))?
    }
}

pub fn role_from_str(s: &str) -> Role {
    match s {
        "admin" => Role::Admin,
        "operator" => Role::Operator,
        // The CHECK constraint allows nothing else; fall back to the least privilege.
        _ => Role::Viewer,
    }
}

/// A user row with its password hash.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: i64,
    pub teams: Vec<String>,
}

impl UserRow {
    pub fn to_wire(&self) -> wire::User {
        wire::User {
            name: self.name.clone(),
            role: self.role,
            teams: self.teams.clone(),
            created_at: self.created_at,
        }
    }
}

fn teams_of(conn: &Connection, user_id: i64) -> Result<Vec<String>, AuthError> {
    let mut stmt =
        conn.prepare_cached("SELECT team FROM team_members WHERE user_id = ?1 ORDER BY team")?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn user_where(
    conn: &Connection,
    clause: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Option<UserRow>, AuthError> {
    let sql = format!("SELECT id, name, role, password_hash, created_at FROM users WHERE {clause}");
    let row = conn
        .query_row(&sql, [arg], |r| {
            Ok(UserRow {
                id: r.get(0)?,
                name: r.get(1)?,
                role: role_from_str(&r.get::<_, String>(2)?),
                password_hash: r.get(3)?,
                created_at: r.get(4)?,
                teams: Vec::new(),
            })
        })
        .optional()?;
    match row {
        Some(mut u) => {
            u.teams = teams_of(conn, u.id)?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

pub fn user_by_name(conn: &Connection, name: &str) -> Result<Option<UserRow>, AuthError> {
    user_where(conn, "name = ?1", &name)
}

pub fn user_by_id(conn: &Connection, id: i64) -> Result<Option<UserRow>, AuthError> {
    user_where(conn, "id = ?1", &id)
}

pub fn list_users(conn: &Connection) -> Result<Vec<wire::User>, AuthError> {
    let ids: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT id FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(u) = user_by_id(conn, id)? {
            out.push(u.to_wire());
        }
    }
    Ok(out)
}

pub fn count_admins(conn: &Connection) -> Result<i64, AuthError> {
    Ok(
        conn.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
            r.get(0)
        })?,
    )
}

/// Checks that every team exists; names the first that does not.
pub fn check_teams(conn: &Connection, teams: &[String]) -> Result<(), AuthError> {
    for t in teams {
        super::validate_team_name("teams", t)?;
        let exists: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM teams WHERE name = ?1)",
            [t],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(AuthError::NotFound(format!(
                "no such team {t:?}: create it first"
            )));
        }
    }
    Ok(())
}

pub fn set_teams(conn: &Connection, user_id: i64, teams: &[String]) -> Result<(), AuthError> {
    conn.execute("DELETE FROM team_members WHERE user_id = ?1", [user_id])?;
    for t in teams {
        conn.execute(
            "INSERT OR IGNORE INTO team_members (team, user_id) VALUES (?1, ?2)",
            params![t, user_id],
        )?;
    }
    Ok(())
}

pub fn insert_user(
    conn: &Connection,
    name: &str,
    role: Role,
    password_hash: &str,
    teams: &[String],
    now: i64,
) -> Result<i64, AuthError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?;
    if exists {
        return Err(AuthError::Conflict(format!("user {name:?} already exists")));
    }
    check_teams(conn, teams)?;
    conn.execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.as_str(), password_hash, now],
    )?;
    let id = conn.last_insert_rowid();
    set_teams(conn, id, teams)?;
    Ok(id)
}

// ---- sessions ----

pub struct SessionRow {
    pub user_id: i64,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen: i64,
}

impl SessionRow {
    /// Neither idle for `idle` seconds nor older than `max` at `now`.
    pub fn is_live(&self, now: i64, idle: i64, max: i64) -> bool {
        now.saturating_sub(self.last_seen) < idle && now.saturating_sub(self.created_at) < max
    }
}

pub fn insert_session(
    conn: &Connection,
    id_hash: &[u8; 32],
    user_id: i64,
    csrf: &str,
    now: i64,
) -> Result<(), AuthError> {
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![&id_hash[..], user_id, csrf, now],
    )?;
    Ok(())
}

pub fn session(conn: &Connection, id_hash: &[u8; 32]) -> Result<Option<SessionRow>, AuthError> {
    Ok(conn
        .query_row(
            "SELECT user_id, csrf_token, created_at, last_seen FROM sessions WHERE id_hash = ?1",
            [&id_hash[..]],
            |r| {
                Ok(SessionRow {
                    user_id: r.get(0)?,
                    csrf_token: r.get(1)?,
                    created_at: r.get(2)?,
                    last_seen: r.get(3)?,
                })
            },
        )
        .optional()?)
}

pub fn touch_session(conn: &Connection, id_hash: &[u8; 32], now: i64) -> Result<(), AuthError> {
    conn.execute(
        "UPDATE sessions SET last_seen = ?2 WHERE id_hash = ?1",
        params![&id_hash[..], now],
    )?;
    Ok(())
}

pub fn delete_session(conn: &Connection, id_hash: &[u8; 32]) -> Result<(), AuthError> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [&id_hash[..]])?;
    Ok(())
}

pub fn delete_user_sessions(conn: &Connection, user_id: i64) -> Result<(), AuthError> {
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
    Ok(())
}

/// Removes sessions past either timeout.
pub fn purge_sessions(conn: &Connection, now: i64, idle: i64, max: i64) -> Result<(), AuthError> {
    conn.execute(
        "DELETE FROM sessions WHERE last_seen < ?1 OR created_at < ?2",
        params![now.saturating_sub(idle), now.saturating_sub(max)],
    )?;
    Ok(())
}

// ---- API tokens ----

pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenRow {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

const TOKEN_ROW_COLUMNS: &str = "id, user_id, expires_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        expires_at: r.get(2)?,
        revoked_at: r.get(3)?,
    })
}

pub fn token_by_hash(conn: &Connection, hash: &[u8; 32]) -> Result<Option<TokenRow>, AuthError> {
    Ok(conn
        .query_row(
            &format!("SELECT {TOKEN_ROW_COLUMNS} FROM api_tokens WHERE token_hash = ?1"),
            [&hash[..]],
            token_row,
        )
        .optional()?)
}

pub fn token_by_id(conn: &Connection, id: i64) -> Result<Option<TokenRow>, AuthError> {
    Ok(conn
        .query_row(
            &format!("SELECT {TOKEN_ROW_COLUMNS} FROM api_tokens WHERE id = ?1"),
            [id],
            token_row,
        )
        .optional()?)
}

pub fn token_used(conn: &Connection, id: i64, now: i64) -> Result<(), AuthError> {
    conn.execute(
        "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
        params![id, now],
    )?;
    Ok(())
}

const TOKEN_COLUMNS: &str =
    "t.id, t.name, u.name, t.created_at, t.last_used_at, t.expires_at, t.revoked_at";

fn token_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<wire::TokenInfo> {
    Ok(wire::TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        user: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

pub fn token_info_by_id(conn: &Connection, id: i64) -> Result<Option<wire::TokenInfo>, AuthError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?1"
    );
    Ok(conn.query_row(&sql, [id], token_info).optional()?)
}

/// Tokens of one user, or of everyone when `user_id` is `None`.
pub fn list_tokens(
    conn: &Connection,
    user_id: Option<i64>,
) -> Result<Vec<wire::TokenInfo>, AuthError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], token_info)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_token(
    conn: &Connection,
    user_id: i64,
    name: &str,
    hash: &[u8; 32],
    now: i64,
    expires_at: Option<i64>,
) -> Result<i64, AuthError> {
    conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, name, &hash[..], now, expires_at],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn token_owner(conn: &Connection, id: i64) -> Result<Option<(i64, Option<i64>)>, AuthError> {
    Ok(conn
        .query_row(
            "SELECT user_id, revoked_at FROM api_tokens WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn revoke_token(conn: &Connection, id: i64, now: i64) -> Result<(), AuthError> {
    conn.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

// ---- teams ----

pub fn team(conn: &Connection, name: &str) -> Result<Option<wire::Team>, AuthError> {
    let row: Option<String> = conn
        .query_row(
            "SELECT description FROM teams WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    let Some(description) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT u.name FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team = ?1 ORDER BY u.name",
    )?;
    let members = stmt
        .query_map([name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(wire::Team {
        name: name.to_owned(),
        description,
        members,
    }))
}

pub fn list_teams(conn: &Connection) -> Result<Vec<wire::Team>, AuthError> {
    let names: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM teams ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if let Some(t) = team(conn, &n)? {
            out.push(t);
        }
    }
    Ok(out)
}
