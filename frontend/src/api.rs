//! The one place that does HTTP: root-relative URLs, JSON in and out, the session's CSRF token
//! on every state-changing request, and the server's `{code, message, field}` kept whole so pages
//! can show its message beside the field it names.
//!
//! A 401 on anything but the session probe sends the browser to the sign-in page (with the page
//! it was on as `next`), since the session has ended.

use std::cell::RefCell;

use serde::{Serialize, de::DeserializeOwned};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestCredentials, RequestInit, Response};

thread_local! {
    /// The CSRF token of the current session (from login, setup or `/api/v1/me`).
    static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Remembers the session's CSRF token (`None` after sign-out).
pub fn set_csrf(token: Option<String>) {
    CSRF.with(|c| *c.borrow_mut() = token);
}

/// An API failure as the UI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    pub status: u16,
    pub error: wire::ApiError,
}

impl ApiFailure {
    /// The request field the server says is wrong, e.g. `limits.memory_max`.
    pub fn field(&self) -> Option<&str> {
        self.error.field.as_deref()
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl std::error::Error for ApiFailure {}

pub type ApiResult<T> = Result<T, ApiFailure>;

fn failure(status: u16, code: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure {
        status,
        error: wire::ApiError {
            code: code.into(),
            message: message.into(),
            field: None,
        },
    }
}

fn js_failure(e: JsValue) -> ApiFailure {
    let detail = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "network error".into());
    failure(0, "network", format!("cannot reach the daemon: {detail}"))
}

/// Paths whose 401 is an answer, not an expired session.
fn probes_session(path: &str) -> bool {
    path.starts_with("/api/v1/me")
        || path.starts_with("/api/v1/login")
        || path.starts_with("/api/v1/setup")
}

/// Sends the browser to the sign-in page, remembering where it was.
pub fn to_sign_in() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let location = window.location();
    let here = location.pathname().unwrap_or_default();
    if here == "/login" || here == "/setup" {
        return;
    }
    let search = location.search().unwrap_or_default();
    let next = js_sys::encode_uri_component(&format!("{here}{search}"));
    let _ = location.set_href(&format!("/login?next={next}"));
}

/// One request; answers the response body as text when the status is 2xx.
pub async fn send_text(method: &str, path: &str, body: Option<String>) -> ApiResult<String> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    let has_body = body.is_some();
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(&b));
    }
    let request = Request::new_with_str_and_init(path, &init).map_err(js_failure)?;
    let headers = request.headers();
    headers
        .set("Accept", "application/json")
        .map_err(js_failure)?;
    if has_body {
        headers
            .set("Content-Type", "application/json")
            .map_err(js_failure)?;
    }
    if method != "GET" {
        // Login and setup have no session yet: any value proves a script (not a form) sent it.
        let token = CSRF
            .with(|c| c.borrow().clone())
            .unwrap_or_else(|| "1".into());
        headers.set("X-Corral-CSRF", &token).map_err(js_failure)?;
    }
    let window = web_sys::window().ok_or_else(|| failure(0, "internal", "no window"))?;
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(js_failure)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(js_failure)?)
        .await
        .map_err(js_failure)?
        .as_string()
        .unwrap_or_default();
    let status = response.status();
    if response.ok() {
        return Ok(text);
    }
    if status == 401 && !probes_session(path) {
        set_csrf(None);
        to_sign_in();
    }
    Err(serde_json::from_str::<wire::ApiError>(&text)
        .map(|error| ApiFailure { status, error })
        .unwrap_or_else(|_| {
            failure(
                status,
                "http",
                format!("the daemon answered {status} {}", response.status_text()),
            )
        }))
}

/// `POST path` with `file` as the body (`application/x-tar`), by XMLHttpRequest so that
/// `on_progress(sent, total)` hears the upload's bytes as they leave (fetch cannot tell);
/// decodes the JSON answer like [`send_text`].
pub async fn upload<T: DeserializeOwned>(
    path: &str,
    file: &web_sys::File,
    on_progress: impl Fn(f64, f64) + 'static,
) -> ApiResult<T> {
    use wasm_bindgen::closure::Closure;
    let xhr = web_sys::XmlHttpRequest::new().map_err(js_failure)?;
    xhr.open_with_async("POST", path, true)
        .map_err(js_failure)?;
    xhr.set_request_header("Accept", "application/json")
        .map_err(js_failure)?;
    xhr.set_request_header("Content-Type", "application/x-tar")
        .map_err(js_failure)?;
    let token = CSRF
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| "1".into());
    xhr.set_request_header("X-Corral-CSRF", &token)
        .map_err(js_failure)?;
    let progress =
        Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
            on_progress(e.loaded(), e.total());
        });
    xhr.upload()
        .map_err(js_failure)?
        .set_onprogress(Some(progress.as_ref().unchecked_ref()));
    // Settles when the request ends, however it ends (`loadend`).
    let done = js_sys::Promise::new(&mut |resolve, _| {
        xhr.set_onloadend(Some(&resolve));
    });
    xhr.send_with_opt_blob(Some(file)).map_err(js_failure)?;
    JsFuture::from(done).await.map_err(js_failure)?;
    drop(progress);
    let status = xhr.status().unwrap_or(0);
    let text = xhr.response_text().ok().flatten().unwrap_or_default();
    if (200..300).contains(&status) {
        return decode(&text);
    }
    if status == 0 {
        return Err(failure(
            0,
            "network",
            "the upload broke off: cannot reach the daemon",
        ));
    }
    if status == 401 {
        set_csrf(None);
        to_sign_in();
    }
    Err(serde_json::from_str::<wire::ApiError>(&text)
        .map(|error| ApiFailure { status, error })
        .unwrap_or_else(|_| failure(status, "http", format!("the daemon answered {status}"))))
}

fn decode<T: DeserializeOwned>(text: &str) -> ApiResult<T> {
    // 204 No Content decodes as JSON `null` (for `()`).
    let text = if text.is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| {
        failure(
            0,
            "decode",
            format!("unexpected answer from the daemon: {e}"),
        )
    })
}

fn encode<B: Serialize>(body: &B) -> ApiResult<String> {
    serde_json::to_string(body).map_err(|e| failure(0, "encode", e.to_string()))
}

/// `GET path`, decoding the JSON answer.
pub async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    decode(&send_text("GET", path, None).await?)
}

/// `POST path` with a JSON body.
pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    decode(&send_text("POST", path, Some(encode(body)?)).await?)
}

/// `PUT path` with a JSON body.
pub async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    decode(&send_text("PUT", path, Some(encode(body)?)).await?)
}

/// `PATCH path` with a JSON body.
pub async fn patch<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    decode(&send_text("PATCH", path, Some(encode(body)?)).await?)
}

/// `DELETE path`; the answer body is ignored.
pub async fn delete(path: &str) -> ApiResult<()> {
    send_text("DELETE", path, None).await.map(|_| ())
}

/// Percent-encodes one path segment or query value.
pub fn enc(s: &str) -> String {
    js_sys::encode_uri_component(s).into()
}

/// Opens a WebSocket to a root-relative `path` on the page's own origin (`ws:` or `wss:` like
/// the page, so an `ssh -L` port works), offering `protocol` and the session's CSRF token as
/// the subprotocol `corral-csrf.<token>` (a page cannot set headers on a WebSocket). Binary
/// messages arrive as `ArrayBuffer`s.
pub fn open_socket(path: &str, protocol: &str) -> ApiResult<web_sys::WebSocket> {
    let window = web_sys::window().ok_or_else(|| failure(0, "internal", "no window"))?;
    let location = window.location();
    let scheme = match location.protocol().map_err(js_failure)?.as_str() {
        "https:" => "wss:",
        _ => "ws:",
    };
    let url = format!("{scheme}//{}{path}", location.host().map_err(js_failure)?);
    let protocols = js_sys::Array::of1(&JsValue::from_str(protocol));
    if let Some(token) = CSRF.with(|c| c.borrow().clone()) {
        protocols.push(&JsValue::from_str(&format!(
            "{}{token}",
            wire::term::CSRF_SUBPROTOCOL_PREFIX
        )));
    }
    let ws = web_sys::WebSocket::new_with_str_sequence(&url, &protocols).map_err(js_failure)?;
    ws.set_binary_type(web_sys::BinaryType::Arraybuffer);
    Ok(ws)
}

/// Waits `ms` milliseconds (a `setTimeout` promise).
pub async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Milliseconds since the Unix epoch, from the browser's clock.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}
