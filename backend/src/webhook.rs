//! Budget webhooks: a `POST` of a [`wire::BudgetEvent`] as JSON to the URL the admin set on
//! a team's budget, on every step change.
//!
//! The governor only pushes onto a bounded [`Queue`] (the oldest is dropped, with a warning,
//! when [`CAPACITY`] are waiting): it never waits for the network, and neither does metering.
//! One task sends them in order, each with a [`TIMEOUT`] per try and [`TRIES`] tries (backoff
//! 1 s, then 4 s). `https://` trusts the system's roots (`/etc/ssl/certs/ca-certificates.crt`).

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use wire::BudgetEvent;

/// Deliveries waiting at most.
pub const CAPACITY: usize = 64;
/// Per try: connect, TLS, request and answer head.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per delivery.
pub const TRIES: usize = 3;
/// Pause before the 2nd and 3rd try.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];
/// The system's trusted roots (Debian's bundle).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A parsed webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Target {
    /// `http://HOST[:PORT][/PATH]` or `https://…`; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("it must start with http:// or https://".into());
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it must not contain spaces or control characters".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err("it has no host".into());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
            None if tls => 443,
            None => 80,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Target {
            tls,
            host,
            port,
            path,
        })
    }
}

/// The deliveries waiting for the sender task.
#[derive(Default)]
pub struct Queue {
    waiting: Mutex<VecDeque<(String, BudgetEvent)>>,
    wake: tokio::sync::Notify,
}

impl Queue {
    /// Queues a delivery; never blocks. When full, the oldest is dropped.
    pub fn push(&self, url: String, event: BudgetEvent) {
        let mut q = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= CAPACITY
            && let Some((url, old)) = q.pop_front()
        {
            tracing::warn!(
                url,
                team = old.team,
                action = old.action,
                "budget webhook queue full; dropped the oldest delivery"
            );
        }
        q.push_back((url, event));
        drop(q);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<(String, BudgetEvent)> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Starts the sender task (it ends when `closed` turns true).
    pub fn start(self: &std::sync::Arc<Self>, mut closed: tokio::sync::watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                while let Some((url, event)) = me.pop() {
                    deliver(&url, &event).await;
                }
                tokio::select! {
                    _ = closed.wait_for(|c| *c) => return,
                    () = me.wake.notified() => {}
                }
            }
        });
    }
}

/// Sends one event with retries; failures are logged, never returned.
async fn deliver(url: &str, event: &BudgetEvent) {
    let body = match serde_json::to_vec(event) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a budget webhook");
            return;
        }
    };
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF[attempt - 1]).await;
        }
        match tokio::time::timeout(TIMEOUT, post(url, body.clone())).await {
            Ok(Ok(status)) if (200..300).contains(&status) => return,
            Ok(Ok(status)) => {
                tracing::warn!(url, status, attempt = attempt + 1, "budget webhook refused");
            }
            Ok(Err(e)) => {
                tracing::warn!(url, error = %e, attempt = attempt + 1, "budget webhook failed")
            }
            Err(_) => tracing::warn!(url, attempt = attempt + 1, "budget webhook timed out"),
        }
    }
    tracing::warn!(
        url,
        team = event.team,
        action = event.action,
        "budget webhook given up after {TRIES} tries"
    );
}

/// One `POST`; the answer's status.
async fn post(url: &str, body: Bytes) -> Result<u16, String> {
    let t = Target::parse(url)?;
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let host_header = if t.host.contains(':') {
        format!("[{}]:{}", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let req = Request::post(t.path.as_str())
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("corral/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    if t.tls {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| format!("bad TLS name: {e}"))?;
        let tls = connector()?
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(hyper_util::rt::TokioIo::new(tls), req).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    // Drained so the server sees the exchange finish; its content is not used.
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// A TLS client trusting the system's roots.
fn connector() -> Result<tokio_rustls::TlsConnector, String> {
    let config = crate::tls::client_config(std::path::Path::new(SYSTEM_ROOTS))?;
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("https://hooks.example.com:8443/a/b?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "hooks.example.com".into(),
                port: 8443,
                path: "/a/b?x=1".into()
            }
        );
        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:9/h").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        for bad in [
            "ftp://a/",
            "http://",
            "http://:80/",
            "http://a:x/",
            "http://u@a/",
            "http://a /",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
