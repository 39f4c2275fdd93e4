//! The embedded dashboard: hashed assets cached for a year, everything else falls back to
//! `index.html` (the app routes on the client) and is revalidated on every load.

use axum::{
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Shown when the binary was built without the dashboard (plain `cargo build`).
const NOT_BUILT: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Corral</title></head>\
<body><h1>Corral</h1><p>This binary was built without the dashboard. Build it with \
<code>cargo xtask run</code>. The API is at <a href=\"/api/v1/health\">/api/v1/health</a>.</p></body></html>";

fn find(path: &str) -> Option<&'static (&'static str, &'static [u8], &'static str, bool)> {
    embedded::ASSETS.iter().find(|(p, ..)| *p == path)
}

pub async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path();
    if gone(path) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some((_, body, ctype, immutable)) = find(path).filter(|(p, ..)| *p != "/index.html") {
        let cache = if *immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return respond(body, ctype, cache);
    }
    // A missing hashed asset is a 404, not the app shell: a stale page must not get HTML as JS.
    if path.starts_with("/assets/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match find("/index.html") {
        Some((_, body, ctype, _)) => respond(body, ctype, "no-cache"),
        None => respond(NOT_BUILT.as_bytes(), "text/html; charset=utf-8", "no-cache"),
    }
}

/// Fault injection (tests only): assets whose path contains `$CORRAL_FAULT_ASSETS_GONE` answer
/// 404, as an open page sees its build's files after the daemon was upgraded.
#[cfg(feature = "fault-injection")]
fn gone(path: &str) -> bool {
    std::env::var("CORRAL_FAULT_ASSETS_GONE")
        .is_ok_and(|s| !s.is_empty() && path.starts_with("/assets/") && path.contains(&s))
}

#[cfg(not(feature = "fault-injection"))]
fn gone(_path: &str) -> bool {
    false
}

fn respond(body: &'static [u8], ctype: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}
