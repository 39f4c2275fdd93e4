//! The one place that does HTTP: relative URLs, JSON in and out, the server's `ApiError` kept
//! whole so pages can show its message beside the field it names.

use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestCredentials, RequestInit, Response};

/// An API failure as the UI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure(pub wire::ApiError);

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for ApiFailure {}

fn failure(code: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure(wire::ApiError {
        code: code.into(),
        message: message.into(),
        field: None,
    })
}

fn js_failure(e: JsValue) -> ApiFailure {
    failure(
        "network",
        format!(
            "cannot reach the daemon: {}",
            e.as_string().unwrap_or_else(|| format!("{e:?}"))
        ),
    )
}

/// `GET path` and decode the JSON answer.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiFailure> {
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_credentials(RequestCredentials::SameOrigin);
    let request = Request::new_with_str_and_init(path, &init).map_err(js_failure)?;
    request
        .headers()
        .set("Accept", "application/json")
        .map_err(js_failure)?;
    let window = web_sys::window().ok_or_else(|| failure("internal", "no window"))?;
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(js_failure)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(js_failure)?)
        .await
        .map_err(js_failure)?;
    let text = text.as_string().unwrap_or_default();
    if !response.ok() {
        return Err(serde_json::from_str::<wire::ApiError>(&text)
            .map(ApiFailure)
            .unwrap_or_else(|_| {
                failure("http", format!("the daemon answered {}", response.status()))
            }));
    }
    serde_json::from_str(&text)
        .map_err(|e| failure("decode", format!("unexpected answer from the daemon: {e}")))
}
