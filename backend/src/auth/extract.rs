//! Extractors: [`Actor`] from the middleware, and JSON/path/query extractors whose rejections are
//! JSON `{code, message, field}` like every other API error.

use axum::{
    extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Path, Query, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{Actor, AuthError};

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or(AuthError::Unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Actor>().cloned())
    }
}

/// A JSON request body: needs `Content-Type: application/json`; unknown fields (with
/// `deny_unknown_fields`), duplicate fields, trailing data and empty bodies are 400.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(AuthError::invalid(
                "body",
                "send the body as json with content-type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AuthError::invalid("body", format!("cannot read body: {e}")))?;
        // Serde also reads a struct from a JSON array (fields by position): only objects are
        // accepted at the top level, as the OpenAPI document says.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AuthError::invalid("body", "the body must be a json object"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error(&mut de)?;
        de.end()
            .map_err(|e| AuthError::invalid("body", format!("invalid json: {e}")))?;
        Ok(ApiJson(value))
    }
}

fn serde_path_to_error<T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
) -> Result<T, AuthError> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        AuthError::Invalid {
            field: error_field(&path, &msg),
            message: format!("invalid request: {msg}"),
        }
    })
}

/// The field a deserialization error is about, as a JSON path (`limits.cpus`,
/// `mounts[0].source`): the path serde was at, plus the field an unknown/missing/duplicate
/// field error names in backticks. `body` when nothing more precise is known.
fn error_field(path: &str, msg: &str) -> String {
    let path = if path == "." || path == "?" { "" } else { path };
    let named = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| msg.split_once(p).and_then(|(_, r)| r.split('`').next()));
    match (path, named) {
        ("", None) => "body".to_owned(),
        ("", Some(n)) => n.to_owned(),
        (p, None) => p.to_owned(),
        // An unknown field's path already ends with that field; a missing one's is its parent.
        (p, Some(n)) if p == n || p.ends_with(&format!(".{n}")) => p.to_owned(),
        (p, Some(n)) => format!("{p}.{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::error_field;

    #[test]
    fn fields_are_json_paths() {
        assert_eq!(error_field(".", "expected value"), "body");
        assert_eq!(
            error_field("limits.cpus", "invalid type: string"),
            "limits.cpus"
        );
        assert_eq!(error_field(".", "unknown field `bogus`, expected"), "bogus");
        assert_eq!(
            error_field("limits.memroy", "unknown field `memroy`"),
            "limits.memroy"
        );
        assert_eq!(
            error_field("limits", "unknown field `memroy`"),
            "limits.memroy"
        );
        assert_eq!(
            error_field("mounts[0]", "missing field `destination`"),
            "mounts[0].destination"
        );
    }
}

/// Path parameters; a malformed one is a 400 with a JSON body.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Path<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| AuthError::invalid("path", e.body_text()))
    }
}

/// Query parameters; a malformed one is a 400 with a JSON body.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| AuthError::invalid("query", e.body_text()))
    }
}
