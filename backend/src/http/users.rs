//! Users (admin only, except reading yourself) and teams (admins manage them; members see
//! theirs; operators of a team may change its description).

use axum::{Json, extract::State, http::StatusCode};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppState, fleet::TeamChange};
use crate::auth::{
    Actor, ApiJson, ApiPath, AuthError, Role,
    audit::{self, Outcome},
    db, now_secs, validate_password, validate_team_name, validate_user_name,
};
use crate::ledger::sync::FleetTeam;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users_list, users_create))
        .routes(routes!(users_get, users_update, users_delete))
        .routes(routes!(teams_list, teams_create))
        .routes(routes!(teams_get, teams_update, teams_delete))
        .routes(routes!(teams_limits_get, teams_limits_update))
}

/// Team pool errors as the answer the client sees (a refused removal or kernel refusal: 409).
pub(super) fn pool_err(e: crate::teams::PoolError) -> AuthError {
    use crate::teams::PoolError;
    match e {
        // The message names the field too: the CLI shows only the message.
        PoolError::Invalid { field, message } if message.contains(field.as_str()) => {
            AuthError::Invalid { field, message }
        }
        PoolError::Invalid { field, message } => AuthError::Invalid {
            message: format!("invalid {field}: {message}"),
            field,
        },
        PoolError::InUse { .. } | PoolError::Refused(_) | PoolError::Unsupported(_) => {
            AuthError::Conflict(e.to_string())
        }
        PoolError::Sql(e) => AuthError::Sql(e),
        other => {
            let mut m = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            AuthError::Internal(m)
        }
    }
}

/// All users.
#[utoipa::path(get, path = "/users", tag = "users",
    responses(
        (status = 200, description = "All users", body = Vec<wire::User>),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, or foreign Host", body = wire::ApiError),
    ))]
async fn users_list(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<Vec<wire::User>>, AuthError> {
    actor.require_admin()?;
    Ok(Json(db::run(state.store(), |c| db::list_users(c)).await?))
}

/// Create a user.
#[utoipa::path(post, path = "/users", tag = "users",
    request_body = wire::UserCreate,
    responses(
        (status = 201, description = "Created", body = wire::User),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "A named team does not exist", body = wire::ApiError),
        (status = 409, description = "The name is taken or reserved", body = wire::ApiError),
    ))]
async fn users_create(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::UserCreate>,
) -> Result<(StatusCode, Json<wire::User>), AuthError> {
    actor.require_admin()?;
    validate_user_name(&req.name)?;
    validate_password(&req.password)?;
    let mut teams = req.teams.clone();
    teams.sort();
    teams.dedup();
    let hash = state.auth().hash_password(req.password).await?;
    let user = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        let id = db::insert_user(&tx, &req.name, req.role, &hash, &teams, now_secs())?;
        let user = db::user_by_id(&tx, id)?
            .ok_or_else(|| AuthError::Internal("created user vanished".into()))?
            .to_wire();
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "user.create")
                .target(format!("user:{}", user.name))
                .after(json!(user)),
        )?;
        tx.commit()?;
        Ok(user)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One user (admins, or the user itself).
#[utoipa::path(get, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses(
        (status = 200, description = "The user", body = wire::User),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin and not yourself", body = wire::ApiError),
        (status = 404, description = "No such user", body = wire::ApiError),
    ))]
async fn users_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::User>, AuthError> {
    if actor.name != name {
        actor.require_admin()?;
    }
    let n = name.clone();
    db::run(state.store(), move |c| db::user_by_name(c, &n))
        .await?
        .map(|u| Json(u.to_wire()))
        .ok_or_else(|| AuthError::NotFound(format!("no such user {name:?}")))
}

/// Change a user's role, teams or password (admin). A new password ends the user's sessions.
#[utoipa::path(patch, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    request_body = wire::UserUpdate,
    responses(
        (status = 200, description = "The updated user", body = wire::User),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such user", body = wire::ApiError),
        (status = 409, description = "Would leave no admin", body = wire::ApiError),
    ))]
async fn users_update(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<wire::UserUpdate>,
) -> Result<Json<wire::User>, AuthError> {
    actor.require_admin()?;
    let hash = match req.password {
        Some(p) => {
            validate_password(&p)?;
            Some(state.auth().hash_password(p).await?)
        }
        None => None,
    };
    let teams = req.teams.map(|mut t| {
        t.sort();
        t.dedup();
        t
    });
    let user = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        let before = db::user_by_name(&tx, &name)?
            .ok_or_else(|| AuthError::NotFound(format!("no such user {name:?}")))?;
        if let Some(role) = req.role {
            if before.role == Role::Admin && role != Role::Admin && db::count_admins(&tx)? <= 1 {
                return Err(AuthError::Conflict(format!(
                    "{name:?} is the last admin: make another admin first"
                )));
            }
            tx.execute(
                "UPDATE users SET role = ?2 WHERE id = ?1",
                rusqlite::params![before.id, role.as_str()],
            )?;
        }
        if let Some(teams) = &teams {
            db::check_teams(&tx, teams)?;
            db::set_teams(&tx, before.id, teams)?;
        }
        if let Some(hash) = &hash {
            tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                rusqlite::params![before.id, hash],
            )?;
            db::delete_user_sessions(&tx, before.id)?;
        }
        let after = db::user_by_id(&tx, before.id)?
            .ok_or_else(|| AuthError::Internal("updated user vanished".into()))?
            .to_wire();
        let mut event = audit::Event::new(&actor, "user.update")
            .target(format!("user:{name}"))
            .before(json!(before.to_wire()))
            .after(json!(after));
        if hash.is_some() {
            event = event.detail("password changed; sessions ended");
        }
        audit::insert(&tx, &event)?;
        tx.commit()?;
        Ok(after)
    })
    .await?;
    Ok(Json(user))
}

/// Delete a user, its sessions and its tokens (admin). The last admin cannot be deleted.
#[utoipa::path(delete, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such user", body = wire::ApiError),
        (status = 409, description = "The last admin", body = wire::ApiError),
    ))]
async fn users_delete(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AuthError> {
    actor.require_admin()?;
    db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        let before = db::user_by_name(&tx, &name)?
            .ok_or_else(|| AuthError::NotFound(format!("no such user {name:?}")))?;
        if before.role == Role::Admin && db::count_admins(&tx)? <= 1 {
            return Err(AuthError::Conflict(format!(
                "{name:?} is the last admin and cannot be deleted"
            )));
        }
        tx.execute("DELETE FROM users WHERE id = ?1", [before.id])?;
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "user.delete")
                .target(format!("user:{name}"))
                .before(json!(before.to_wire())),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The teams you can see (admins: all).
#[utoipa::path(get, path = "/teams", tag = "teams",
    responses(
        (status = 200, description = "Visible teams", body = Vec<wire::Team>),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn teams_list(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<Vec<wire::Team>>, AuthError> {
    let all = db::run(state.store(), |c| db::list_teams(c)).await?;
    let scope = actor.team_scope();
    Ok(Json(
        all.into_iter()
            .filter(|t| scope.contains(&t.name))
            .collect(),
    ))
}

/// Create a team (admin).
#[utoipa::path(post, path = "/teams", tag = "teams",
    request_body = wire::TeamCreate,
    responses(
        (status = 201, description = "Created", body = wire::Team),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 409, description = "The name is taken", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn teams_create(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::TeamCreate>,
) -> Result<(StatusCode, Json<wire::Team>), AuthError> {
    actor.require_admin()?;
    validate_team_name("name", &req.name)?;
    validate_description(&req.description)?;
    // With a shared ledger the team is the fleet's: written there first (a name taken on
    // another host is refused), created here, and by every other host on its next pull.
    let fleet = TeamChange::begin(&state, &req.name).await?;
    if let Some(f) = &fleet {
        let n = req.name.clone();
        if db::run(state.store(), move |c| db::team(c, &n))
            .await?
            .is_some()
            || f.before.as_ref().is_some_and(|t| !t.deleted)
        {
            return Err(AuthError::Conflict(format!(
                "team {:?} already exists",
                req.name
            )));
        }
        f.write(&FleetTeam {
            name: req.name.clone(),
            description: req.description.clone(),
            limits: wire::Limits::default(),
            deleted: false,
        })
        .await?;
    }
    let pools = state.pools().clone();
    let name = req.name.clone();
    let in_fleet = fleet.is_some();
    let team = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        // With a ledger the team was checked absent here before PostgreSQL got it: one here
        // now is this request's own, pulled back by the shipper in between.
        let exists = db::team(&tx, &req.name)?.is_some();
        if exists && !in_fleet {
            return Err(AuthError::Conflict(format!(
                "team {:?} already exists",
                req.name
            )));
        }
        if !exists {
            tx.execute(
                "INSERT INTO teams (name, description, created_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![req.name, req.description, now_secs()],
            )?;
        }
        let team = db::team(&tx, &req.name)?
            .ok_or_else(|| AuthError::Internal("created team vanished".into()))?;
        pools.create(&team.name).map_err(pool_err)?;
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "team.create")
                .target(format!("team:{}", team.name))
                .after(json!(team)),
        )?;
        tx.commit()?;
        Ok(team)
    })
    .await;
    let team = undo_on_error(fleet.as_ref(), &name, team).await?;
    meter_team(&state, team.name.clone()).await;
    Ok((StatusCode::CREATED, Json(team)))
}

/// Meters the new team's pool from now on, so its counters and history run for the team's
/// whole life, not only while it has containers (a blocking registration: reads the group and
/// commits its baseline).
async fn meter_team(state: &AppState, team: String) {
    if let Some(m) = state.metering().cloned() {
        let _ = tokio::task::spawn_blocking(move || m.meter_team(&team)).await;
    }
}

fn validate_description(d: &str) -> Result<(), AuthError> {
    if d.chars().count() > 1000 || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(AuthError::invalid(
            "description",
            "a description has at most 1000 characters and no control characters",
        ));
    }
    Ok(())
}

/// Looks a team up for `actor`: 403 when it is not theirs (whether or not it exists), 404 for
/// an admin when it does not exist.
pub(super) async fn visible_team(
    state: &AppState,
    actor: &Actor,
    name: &str,
) -> Result<wire::Team, AuthError> {
    actor.can_see_team(name)?;
    let n = name.to_owned();
    db::run(state.store(), move |c| db::team(c, &n))
        .await?
        .ok_or_else(|| AuthError::NotFound(format!("no such team {name:?}")))
}

/// One team: its members, containers, pooled ceilings as the kernel enforces them, and usage
/// now (members and admins).
#[utoipa::path(get, path = "/teams/{name}", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    responses(
        (status = 200, description = "The team", body = wire::TeamDetail),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not a member", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
    ))]
async fn teams_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::TeamDetail>, AuthError> {
    let team = visible_team(&state, &actor, &name).await?;
    let pools = state.pools().clone();
    let n = name.clone();
    let (containers, limits, mut usage) = db::run(state.store(), move |conn| {
        let containers = crate::teams::containers_of(conn, &n)?;
        let limits = pools.limits(&n).map_err(pool_err)?;
        let usage = pools.usage(&n).map_err(pool_err)?;
        Ok((containers, limits, usage))
    })
    .await?;
    let g = state.governor().clone();
    let n = name.clone();
    let budget = db::run(state.store(), move |c| {
        g.get(c, &n).map_err(super::budgets::budget_err)
    })
    .await?;
    if let Some(m) = state.metering() {
        usage.cpu_cores = m
            .live()
            .into_iter()
            .find(|s| s.subject == crate::metering::sampler::team_subject(&name))
            .map(|s| s.rates.cpu_cores);
    }
    Ok(Json(wire::TeamDetail {
        name: team.name,
        description: team.description,
        members: team.members,
        containers,
        limits,
        usage,
        budget,
    }))
}

/// The team's pooled ceilings as the kernel enforces them (members and admins).
#[utoipa::path(get, path = "/teams/{name}/limits", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    responses(
        (status = 200, description = "Limits read back from the team's cgroup", body = wire::Limits),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not a member", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
    ))]
async fn teams_limits_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::Limits>, AuthError> {
    visible_team(&state, &actor, &name).await?;
    let pools = state.pools().clone();
    let limits = db::run(state.store(), move |_| {
        pools.limits(&name).map_err(pool_err)
    })
    .await?;
    Ok(Json(limits))
}

/// Change the team's pooled ceilings live (admin): absent fields stay, `null` or `"max"`
/// removes a limit. Validated like container limits; all or nothing.
#[utoipa::path(patch, path = "/teams/{name}/limits", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    request_body = wire::LimitsPatch,
    responses(
        (status = 200, description = "Limits read back from the team's cgroup", body = wire::Limits),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
        (status = 409, description = "The host cannot carry out the limits (a knob its cgroups lack, a kernel refusal); nothing changed", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn teams_limits_update(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(patch): ApiJson<wire::LimitsPatch>,
) -> Result<Json<wire::Limits>, AuthError> {
    require_admin_to(&state, &actor, "team.limits", &name).await?;
    visible_team(&state, &actor, &name).await?;
    let (fleet, target) = fleet_team_change(&state, &name, None, Some(&patch), "").await?;
    let pools = state.pools().clone();
    let n = name.clone();
    let limits = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        let after = apply_limits(&pools, &tx, &actor, &n, patch, target.map(|t| t.limits))?;
        tx.commit()?;
        Ok(after)
    })
    .await;
    Ok(Json(undo_on_error(fleet.as_ref(), &name, limits).await?))
}

/// With a shared ledger: the team's definition with `description` and `patch` applied to
/// the fleet's copy (this host's when PostgreSQL has none yet), checked and written to
/// PostgreSQL; this host then puts exactly that in force. `prefix` names the limits' field
/// in errors (`limits.` in `PATCH /teams/{name}`).
async fn fleet_team_change(
    state: &AppState,
    name: &str,
    description: Option<&str>,
    patch: Option<&wire::LimitsPatch>,
    prefix: &str,
) -> Result<(Option<TeamChange>, Option<FleetTeam>), AuthError> {
    let Some(f) = TeamChange::begin(state, name).await? else {
        return Ok((None, None));
    };
    let base = match &f.before {
        Some(t) if t.deleted => {
            return Err(AuthError::NotFound(format!(
                "team {name:?} was removed from the fleet"
            )));
        }
        Some(t) => t.clone(),
        None => {
            let n = name.to_owned();
            db::run(state.store(), move |c| {
                let team = db::team(c, &n)?
                    .ok_or_else(|| AuthError::NotFound(format!("no such team {n:?}")))?;
                Ok(FleetTeam {
                    limits: crate::teams::Pools::stored(c, &n).map_err(pool_err)?,
                    name: team.name,
                    description: team.description,
                    deleted: false,
                })
            })
            .await?
        }
    };
    let limits = patch.map_or(base.limits.clone(), |p| p.clone().merge(&base.limits));
    crate::teams::validate(&limits)
        .map_err(pool_err)
        .map_err(|e| match e {
            AuthError::Invalid { field, message } => AuthError::Invalid {
                field: format!("{prefix}{field}"),
                message,
            },
            other => other,
        })?;
    let target = FleetTeam {
        description: description.map_or(base.description.clone(), str::to_owned),
        limits,
        ..base
    };
    f.write(&target).await?;
    Ok((Some(f), Some(target)))
}

/// A local change's result; when it failed, the fleet's definition written before it is put
/// back (so no host applies what this one refused).
async fn undo_on_error<T>(
    fleet: Option<&TeamChange>,
    name: &str,
    r: Result<T, AuthError>,
) -> Result<T, AuthError> {
    if r.is_err()
        && let Some(f) = fleet
    {
        f.undo(name).await;
    }
    r
}

/// Refuses (and audits as `action`) a change of a team's settings — its limits
/// (`team.limits`), its budget (`team.budget`) — by anyone but an admin.
pub(super) async fn require_admin_to(
    state: &AppState,
    actor: &Actor,
    action: &str,
    name: &str,
) -> Result<(), AuthError> {
    if let Err(e) = actor.require_admin() {
        audit::record(
            state.store(),
            audit::Event::new(actor, action)
                .target(format!("team:{name}"))
                .result(Outcome::Denied),
        )
        .await;
        return Err(e);
    }
    Ok(())
}

/// Applies `patch` to the team's ceilings in `tx` (or puts the fleet's `target` in force,
/// `patch` already applied to it), with its audit row; the kernel's limits after.
fn apply_limits(
    pools: &crate::teams::Pools,
    tx: &rusqlite::Transaction<'_>,
    actor: &Actor,
    name: &str,
    patch: wire::LimitsPatch,
    target: Option<wire::Limits>,
) -> Result<wire::Limits, AuthError> {
    let asked = json!(patch);
    let (before, after) = match target {
        Some(t) => pools.set(tx, name, t),
        None => pools.update(tx, name, patch),
    }
    .map_err(pool_err)?;
    audit::insert(
        tx,
        &audit::Event::new(actor, "team.limits")
            .target(format!("team:{name}"))
            .before(json!(before))
            .after(json!({"asked": asked, "limits": after})),
    )?;
    Ok(after)
}

/// Change a team's description (admins and the team's operators) and/or its pooled ceilings
/// (`limits`, admins only; as `PATCH /teams/{name}/limits`). All or nothing.
#[utoipa::path(patch, path = "/teams/{name}", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    request_body = wire::TeamUpdate,
    responses(
        (status = 200, description = "The updated team", body = wire::Team),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an operator of the team, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
        (status = 409, description = "The host cannot carry out the limits (a knob its cgroups lack, a kernel refusal); nothing changed", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn teams_update(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<wire::TeamUpdate>,
) -> Result<Json<wire::Team>, AuthError> {
    if let Err(e) = actor.can_act_on_team(&name) {
        audit::record(
            state.store(),
            audit::Event::new(&actor, "team.update")
                .target(format!("team:{name}"))
                .result(Outcome::Denied),
        )
        .await;
        return Err(e);
    }
    if req.limits.is_some() {
        require_admin_to(&state, &actor, "team.limits", &name).await?;
    }
    if let Some(d) = &req.description {
        validate_description(d)?;
    }
    let before = visible_team(&state, &actor, &name).await?;
    let (fleet, target) = fleet_team_change(
        &state,
        &name,
        req.description.as_deref(),
        req.limits.as_ref(),
        "limits.",
    )
    .await?;
    let pools = state.pools().clone();
    let n = name.clone();
    let team = db::run(state.store(), move |conn| {
        let name = n;
        let tx = conn.transaction()?;
        if let Some(d) = &req.description {
            tx.execute(
                "UPDATE teams SET description = ?2 WHERE name = ?1",
                rusqlite::params![name, d],
            )?;
        }
        let after = db::team(&tx, &name)?
            .ok_or_else(|| AuthError::NotFound(format!("no such team {name:?}")))?;
        if req.description.is_some() {
            audit::insert(
                &tx,
                &audit::Event::new(&actor, "team.update")
                    .target(format!("team:{name}"))
                    .before(json!(before))
                    .after(json!(after)),
            )?;
        }
        if let Some(patch) = req.limits {
            let target = target.map(|t| t.limits);
            apply_limits(&pools, &tx, &actor, &name, patch, target).map_err(|e| match e {
                AuthError::Invalid { field, message } => AuthError::Invalid {
                    field: format!("limits.{field}"),
                    message,
                },
                other => other,
            })?;
        }
        tx.commit()?;
        Ok(after)
    })
    .await;
    Ok(Json(undo_on_error(fleet.as_ref(), &name, team).await?))
}

/// Delete a team, its memberships and its cgroup (admin); refused while it has containers.
#[utoipa::path(delete, path = "/teams/{name}", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
        (status = 409, description = "The team still has containers (named in the message)", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn teams_delete(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AuthError> {
    actor.require_admin()?;
    let before = visible_team(&state, &actor, &name).await?;
    // With a shared ledger the team goes from the whole fleet: refused here first while it
    // has containers on this host, then a tombstone in PostgreSQL every host acts on.
    let fleet = TeamChange::begin(&state, &name).await?;
    if let Some(f) = &fleet {
        let n = name.clone();
        let (containers, limits) = db::run(state.store(), move |c| {
            Ok((
                crate::teams::containers_of(c, &n)?,
                crate::teams::Pools::stored(c, &n).map_err(pool_err)?,
            ))
        })
        .await?;
        if !containers.is_empty() {
            return Err(pool_err(crate::teams::PoolError::InUse {
                team: name,
                names: containers,
            }));
        }
        f.write(&FleetTeam {
            name: name.clone(),
            description: before.description.clone(),
            limits,
            deleted: true,
        })
        .await?;
    }
    let pools = state.pools().clone();
    let name_gone = name.clone();
    let removed = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        // Refused while the team has containers; the team's cgroup goes with it.
        pools.remove(&tx, &name).map_err(pool_err)?;
        tx.execute("DELETE FROM teams WHERE name = ?1", [&name])?;
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "team.delete")
                .target(format!("team:{name}"))
                .before(json!(before)),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await;
    undo_on_error(fleet.as_ref(), &name_gone, removed).await?;
    // The team and its group are gone: so is its metering (its history stays).
    if let Some(m) = state.metering() {
        m.unregister_team(&name_gone);
    }
    Ok(StatusCode::NO_CONTENT)
}
