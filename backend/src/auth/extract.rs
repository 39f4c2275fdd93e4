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
    T::deserialize(de).map_err(|e| {
        let msg = e.to_string();
        // serde names the offending field as `name` in backticks; report it as the field.
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("body")
            .to_owned();
        AuthError::Invalid {
            field,
            message: format!("invalid request: {msg}"),
        }
    })
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
