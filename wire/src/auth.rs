//! Users, sessions, API tokens, teams and the audit log.
//!
//! Every request type rejects unknown fields: a typo in a privileged option is an error, never
//! silently ignored.

use serde::{Deserialize, Serialize};

/// What a user may do: `admin` everything; `operator` acts on the containers of their teams;
/// `viewer` reads their teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// Teams the user belongs to (sorted).
    pub teams: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /api/v1/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

/// The answer to a login or a completed setup; the session itself travels in an HttpOnly cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginResponse {
    pub user: User,
    /// Send it back as `X-Corral-CSRF` on every state-changing request of this session.
    pub csrf_token: String,
}

/// `GET /api/v1/setup`: whether the one-time admin setup is still open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetupStatus {
    pub needed: bool,
}

/// `POST /api/v1/setup`: creates the first admin with the token from the printed setup link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: String,
}

/// `GET /api/v1/me`: who the daemon thinks you are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Me {
    /// The account name; `root` for root over the unix socket.
    pub name: String,
    pub role: Role,
    pub teams: Vec<String>,
    /// `session`, `token` or `unix`.
    pub via: String,
    /// The session's CSRF token (cookie sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit (`root` is reserved).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    pub role: Role,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<TeamName>))]
    pub teams: Vec<String>,
    /// 8 to 1024 characters, any Unicode; never truncated.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: String,
}

/// `PATCH /api/v1/users/{name}`: absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<TeamName>>))]
    pub teams: Option<Vec<String>>,
    /// A new password; ends every session of the user.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: Option<String>,
}

/// A team name: 1-63 of `a-z 0-9 -`, starting with a letter or digit (schema only).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$")]
pub struct TeamName(pub String);

/// `PUT /api/v1/me/password`: change your own password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 8 to 1024 characters, any Unicode; never truncated.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub new_password: String,
}

/// A team: the unit operators and viewers are scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub name: String,
    pub description: String,
    /// Member names (sorted).
    pub members: Vec<String>,
}

/// `POST /api/v1/teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TeamCreate {
    /// 1-63 of `a-z 0-9 -`, starting with a letter or digit.
    #[cfg_attr(feature = "openapi", schema(value_type = TeamName))]
    pub name: String,
    /// At most 1000 characters, no control characters but newline.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::formats::Description))]
    pub description: String,
}

/// `PATCH /api/v1/teams/{name}`: operators of the team may change its description; only admins
/// its pooled ceilings (`limits`, as `PATCH /api/v1/teams/{name}/limits`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TeamUpdate {
    /// At most 1000 characters, no control characters but newline. Unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::formats::Description>))]
    pub description: Option<String>,
    /// The team's ceilings to change (admins): absent fields stay, `null`/`"max"` removes one.
    #[serde(
        default,
        deserialize_with = "crate::teams::opt_patch_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub limits: Option<crate::LimitsPatch>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// A label: 1-64 characters, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
        )
    )]
    pub name: String,
    /// Admins may create a token for another user (root over the unix socket must name one).
    #[serde(default)]
    pub user: Option<String>,
    /// Days until the token expires (1-3650); never when absent.
    #[serde(default, deserialize_with = "opt_whole_u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<u32>,
}

/// An optional `u32` that also accepts a whole JSON float (`30.0`): JSON Schema calls that an
/// integer, and the OpenAPI document promises what JSON Schema means.
fn opt_whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a whole number from 0 to 4294967295, or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            u32::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u32::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                // Whole and in range: the conversion is exact.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(v as u32))
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_option(V)
}

/// An API token without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub created_at: i64,
    #[serde(default)]
    pub last_used_at: Option<i64>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// The answer to `POST /api/v1/tokens`: the secret is shown this once and stored only hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenCreated {
    pub token: String,
    pub info: TokenInfo,
}

/// One row of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who: a user name, `root` (unix socket), or `-` when unauthenticated.
    pub actor: String,
    /// `session`, `token`, `unix` or `-`.
    pub via: String,
    /// What, e.g. `login`, `user.create`, `token.revoke`, `http POST /api/v1/...`.
    pub action: String,
    #[serde(default)]
    pub target: Option<String>,
    /// JSON text of the state before the change.
    #[serde(default)]
    pub before: Option<String>,
    /// JSON text of the state after the change.
    #[serde(default)]
    pub after: Option<String>,
    /// `ok`, `denied`, `failed`, `throttled` or `error`.
    pub result: String,
    #[serde(default)]
    pub detail: Option<String>,
}
