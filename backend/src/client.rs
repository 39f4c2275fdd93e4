//! The CLI's HTTP client: one request per connection, over the unix socket or TCP, chosen by
//! `--host` / `CORRAL_HOST` (`unix:///run/corral/corral.sock` or `http://127.0.0.1:7700`).

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    header::{ACCEPT, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid host {0:?}: expected unix:///path/to.sock or http://ADDR:PORT")]
    BadHost(String),
    #[error("cannot connect to the corral daemon at {host} (is `corral serve` running?)")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("http error talking to {host}")]
    Http { host: String, source: hyper::Error },
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("unexpected response from the daemon ({status})")]
    Decode {
        status: StatusCode,
        source: serde_json::Error,
    },
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    /// Parses `unix:///path` or `http://host:port`.
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(Host::Unix(PathBuf::from(path)));
            }
        } else if let Some(addr) = s.strip_prefix("http://") {
            let addr = addr.trim_end_matches('/');
            if !addr.is_empty() && !addr.contains('/') {
                return Ok(Host::Tcp(addr.to_owned()));
            }
        }
        Err(ClientError::BadHost(s.to_owned()))
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    token: Option<String>,
}

impl Client {
    pub fn new(host: Host, token: Option<String>) -> Self {
        Self { host, token }
    }

    /// `GET path`, decoding a JSON answer.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.request(Method::GET, path, None).await?;
        decode(status, &body)
    }

    /// `GET path`, handing each chunk of the answer to `on_chunk` as it arrives (log follow).
    pub async fn stream(
        &self,
        path: &str,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<(), ClientError> {
        let host_str = self.host.to_string();
        let http_err = |source| ClientError::Http {
            host: host_str.clone(),
            source,
        };
        let authority = match &self.host {
            Host::Unix(_) => "localhost".to_owned(),
            Host::Tcp(a) => a.clone(),
        };
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, authority)
            .header("x-corral-client", "cli");
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .expect("request parts are valid");
        let connect_err = |source| ClientError::Connect {
            host: host_str.clone(),
            source,
        };
        let response = match &self.host {
            Host::Unix(p) => {
                let stream = UnixStream::connect(p).await.map_err(connect_err)?;
                send(TokioIo::new(stream), req).await.map_err(http_err)?
            }
            Host::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await.map_err(connect_err)?;
                send(TokioIo::new(stream), req).await.map_err(http_err)?
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(http_err)?.to_bytes();
            return Err(api_error(status, &bytes));
        }
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(http_err)?.into_data() {
                on_chunk(&data);
            }
        }
        Ok(())
    }

    /// Sends one request; returns the status and body. API errors become `ClientError::Api`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let host_str = self.host.to_string();
        let connect_err = |source| ClientError::Connect {
            host: host_str.clone(),
            source,
        };
        let http_err = |source| ClientError::Http {
            host: host_str.clone(),
            source,
        };
        let authority = match &self.host {
            Host::Unix(_) => "localhost".to_owned(),
            Host::Tcp(a) => a.clone(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, authority)
            .header(ACCEPT, "application/json")
            // Marks a non-browser client for the CSRF check.
            .header("x-corral-client", "cli");
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if json.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .expect("request parts are valid");

        let response = match &self.host {
            Host::Unix(path) => {
                let stream = UnixStream::connect(path).await.map_err(connect_err)?;
                send(TokioIo::new(stream), req).await.map_err(http_err)?
            }
            Host::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await.map_err(connect_err)?;
                send(TokioIo::new(stream), req).await.map_err(http_err)?
            }
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http_err)?
            .to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok((status, body))
    }
}

async fn send<I>(
    io: I,
    req: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

fn decode<T: serde::de::DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|source| ClientError::Decode { status, source })
}

/// The daemon's JSON error body as a [`ClientError::Api`] (or a generic one when the body is
/// not JSON).
fn api_error(status: hyper::StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<wire::ApiError>(body) {
        Ok(e) => ClientError::Api {
            status,
            code: e.code,
            message: e.message,
            field: e.field,
        },
        Err(_) => ClientError::Api {
            status,
            code: "http".into(),
            message: format!("daemon answered {status}"),
            field: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        assert_eq!(
            Host::parse("unix:///run/corral/corral.sock").unwrap(),
            Host::Unix("/run/corral/corral.sock".into())
        );
        assert_eq!(
            Host::parse("http://127.0.0.1:7700").unwrap(),
            Host::Tcp("127.0.0.1:7700".into())
        );
        assert_eq!(
            Host::parse("http://127.0.0.1:7700/").unwrap(),
            Host::Tcp("127.0.0.1:7700".into())
        );
        for bad in [
            "unix://relative",
            "https://x",
            "127.0.0.1:7700",
            "http://",
            "http://a/b",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
    }
}
