//! `AppError`: every handler error becomes a status and a `wire::ApiError` body.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// An error a handler returns. 5xx are logged with their whole source chain; the client only
/// sees a generic message for them.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (name taken, container not running...).
    #[error("{0}")]
    Conflict(String),
    /// A field of the request is invalid: the message names the allowed values.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The body is larger than the route allows (413).
    #[error("{0}")]
    TooLarge(String),
    /// The state filesystem has no room for what the request brings (507).
    #[error("{0}")]
    NoRoom(String),
    /// Something else refused, with the status and the code that name the cause (a registry's
    /// refusal of a pull: 424 `registry_unauthorized`, 404 `image_unknown`, …).
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// Authentication/authorization (401/403/429...) and auth-area errors; answers as `AuthError`.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// Anything unexpected: logged with its source chain, shown as `internal error`.
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AppError {
    /// Wraps an unexpected error with a short description of what was being done.
    pub fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let AppError::Auth(e) = self else {
            return self.plain_response();
        };
        e.into_response()
    }
}

impl AppError {
    /// Status, code and field of an error answered as [`AppError::body`].
    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            AppError::NoRoom(_) => (StatusCode::INSUFFICIENT_STORAGE, "no_room", None),
            AppError::Refused { status, code, .. } => (*status, code, None),
            AppError::Invalid { field, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_value",
                Some(field.clone()),
            ),
            AppError::Internal { .. } | AppError::Auth(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        }
    }

    /// The body this error answers with (also where no response carries it: the last line of
    /// a progress stream).
    pub(crate) fn body(&self) -> wire::ApiError {
        let (status, code, field) = self.parts();
        // A refusal's message is ours and names its cause, also with a 5xx status (503
        // `checkpoint_unavailable` carries criu's reason): it is shown, not masked.
        if let AppError::Refused { message, .. } = self {
            return wire::ApiError {
                code: code.to_owned(),
                message: message.clone(),
                field,
            };
        }
        error_body(status, code, field, self)
    }

    fn plain_response(self) -> Response {
        (self.parts().0, Json(self.body())).into_response()
    }
}

/// The JSON error body for `err`. A 5xx is logged with its whole source chain and the client
/// only sees "internal error".
pub(crate) fn error_body(
    status: StatusCode,
    code: &str,
    field: Option<String>,
    err: &(dyn std::error::Error + 'static),
) -> wire::ApiError {
    let message = if status.is_server_error() {
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "request failed");
        "internal error".to_owned()
    } else {
        err.to_string()
    };
    wire::ApiError {
        code: code.to_owned(),
        message,
        field,
    }
}

/// [`error_body`] as a response with `status`.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    field: Option<String>,
    err: &(dyn std::error::Error + 'static),
) -> Response {
    (status, Json(error_body(status, code, field, err))).into_response()
}

/// Unknown paths under `/api/v1` answer JSON, never the dashboard.
pub async fn api_not_found(uri: axum::http::Uri) -> AppError {
    AppError::NotFound(format!("no such endpoint: {}", uri.path()))
}

/// A panicking handler answers 500 with the usual JSON body; the daemon keeps running.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    let body = wire::ApiError {
        code: "internal".into(),
        message: "internal error".into(),
        field: None,
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
