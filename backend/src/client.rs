//! The CLI's HTTP client: one request per connection, over the unix socket, TCP or TLS, chosen
//! by `--host` / `CORRAL_HOST` (`unix:///run/corral/corral.sock`, `http://127.0.0.1:7700` or
//! `https://HOST:PORT`, verified against `--tls-ca` / `CORRAL_TLS_CA`).

use std::path::PathBuf;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    header::{ACCEPT, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    net::{TcpStream, UnixStream},
};

/// Hears each line of a streamed answer.
pub type LineSink<'a> = dyn FnMut(&[u8]) + Send + 'a;

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid host {0:?}: expected unix:///path/to.sock, http://ADDR:PORT or https://HOST:PORT"
    )]
    BadHost(String),
    #[error(
        "{host} needs the daemon's certificate or its CA to verify it: --tls-ca FILE.pem or CORRAL_TLS_CA"
    )]
    NoTlsCa { host: String },
    #[error("cannot use {path} as the daemon's CA: {message}")]
    BadTlsCa { path: PathBuf, message: String },
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
    /// `https://HOST:PORT`.
    Tls(String),
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
        } else if let Some(addr) = s.strip_prefix("https://") {
            let addr = addr.trim_end_matches('/');
            if !addr.is_empty() && !addr.contains('/') && server_name(addr).is_some() {
                return Ok(Host::Tls(addr.to_owned()));
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
            Host::Tls(a) => write!(f, "https://{a}"),
        }
    }
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    token: Option<String>,
    tls_ca: Option<PathBuf>,
}

impl Client {
    pub fn new(host: Host, token: Option<String>) -> Self {
        Self {
            host,
            token,
            tls_ca: None,
        }
    }

    /// The PEM certificate(s) an `https://` daemon's certificate must chain to.
    pub fn with_tls_ca(mut self, ca: Option<PathBuf>) -> Self {
        self.tls_ca = ca;
        self
    }

    /// The `Host` header: the address for TCP and TLS, `localhost` over the socket.
    fn authority(&self) -> String {
        match &self.host {
            Host::Unix(_) => "localhost".to_owned(),
            Host::Tcp(a) | Host::Tls(a) => a.clone(),
        }
    }

    /// Opens one connection to the daemon (TLS handshake included).
    async fn connect(&self) -> Result<Box<dyn Conn>, ClientError> {
        let connect_err = |source| ClientError::Connect {
            host: self.host.to_string(),
            source,
        };
        Ok(match &self.host {
            Host::Unix(p) => Box::new(UnixStream::connect(p).await.map_err(connect_err)?),
            Host::Tcp(addr) => Box::new(TcpStream::connect(addr).await.map_err(connect_err)?),
            Host::Tls(addr) => {
                let ca = self.tls_ca.as_deref().ok_or_else(|| ClientError::NoTlsCa {
                    host: self.host.to_string(),
                })?;
                let connector = tls_connector(ca)?;
                let name = server_name(addr).ok_or_else(|| ClientError::BadHost(addr.clone()))?;
                let tcp = TcpStream::connect(addr).await.map_err(connect_err)?;
                Box::new(connector.connect(name, tcp).await.map_err(connect_err)?)
            }
        })
    }

    /// Opens a WebSocket on `path` ([`wire::term`]'s subprotocol), with the token and the
    /// CLI's CSRF marker like every request. A refusal before the upgrade is the daemon's
    /// error, as for any request.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Conn>>, ClientError> {
        use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
        let scheme = if matches!(self.host, Host::Tls(_)) { "wss" } else { "ws" };
        let url = format!("{scheme}://{}{path}", self.authority());
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|_| ClientError::BadHost(url.clone()))?;
        let h = req.headers_mut();
        let value = |v: &str| hyper::header::HeaderValue::from_str(v).expect("ascii header");
        h.insert("x-corral-client", value("cli"));
        h.insert("sec-websocket-protocol", value(wire::term::SUBPROTOCOL));
        if let Some(token) = &self.token {
            h.insert(
                hyper::header::AUTHORIZATION,
                value(&format!("Bearer {token}")),
            );
        }
        let conn = self.connect().await?;
        match tokio_tungstenite::client_async(req, conn).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status();
                let body = resp.body().clone().unwrap_or_default();
                Err(api_error(status, &body))
            }
            Err(e) => Err(ClientError::Connect {
                host: self.host.to_string(),
                source: std::io::Error::other(e),
            }),
        }
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
        let response = self.send(Method::GET, path, None, "*/*").await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(self.http_err())?.to_bytes();
            return Err(api_error(status, &bytes));
        }
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(self.http_err())?.into_data() {
                on_chunk(&data);
            }
        }
        Ok(())
    }

    fn http_err(&self) -> impl Fn(hyper::Error) -> ClientError + '_ {
        move |source| ClientError::Http {
            host: self.host.to_string(),
            source,
        }
    }

    /// Builds and sends one request (Host, the CLI's CSRF marker, the token); the answer's
    /// head, with its body still to read.
    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut req = self.builder(method, path, accept);
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if json.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .expect("request parts are valid");
        send(TokioIo::new(self.connect().await?), req)
            .await
            .map_err(self.http_err())
    }

    /// Sends one request; returns the status and body. API errors become `ClientError::Api`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.request_with(method, path, json, "application/json", None)
            .await
    }

    /// Like [`Client::request`] with `Accept: application/x-ndjson`: `on_line` hears each line
    /// of a successful answer as it arrives (progress streams); the lines are also returned.
    pub async fn request_lines(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        on_line: &mut LineSink<'_>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.request_with(method, path, json, "application/x-ndjson", Some(on_line))
            .await
    }

    /// Sends a request with `Accept: application/x-ndjson` and hands each line of a successful
    /// answer to `on_line` as it arrives, holding only the line being read (at most `max_line`
    /// bytes; a longer one is an error). `on_line` may block: the daemon then waits
    /// (back-pressure); when it returns `false` the connection is closed at once. API errors
    /// become `ClientError::Api`.
    pub async fn stream_lines(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        max_line: usize,
        on_line: &mut (dyn FnMut(&[u8]) -> bool + Send + '_),
    ) -> Result<(), ClientError> {
        let response = self.send(method, path, json, wire::NDJSON).await?;
        let http_err = self.http_err();
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(&http_err)?.to_bytes();
            return Err(api_error(status, &bytes));
        }
        let mut line = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(&http_err)?.into_data() else {
                continue;
            };
            let mut rest = &data[..];
            while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&rest[..nl]);
                if !on_line(&line) {
                    return Ok(());
                }
                line.clear();
                rest = &rest[nl + 1..];
            }
            line.extend_from_slice(rest);
            if line.len() > max_line {
                return Err(ClientError::Api {
                    status,
                    code: "http".into(),
                    message: format!("the daemon sent a line longer than {max_line} bytes"),
                    field: None,
                });
            }
        }
        if !line.is_empty() {
            on_line(&line);
        }
        Ok(())
    }

    /// `POST path` with `file` (`len` bytes) as the body, `application/x-tar`, and `Accept:
    /// application/x-ndjson`: the file is read and sent as the connection takes it, never held
    /// whole; `on_sent` hears the bytes sent so far, `on_line` each line of the answer.
    pub async fn upload_lines(
        &self,
        path: &str,
        file: tokio::fs::File,
        len: u64,
        mut on_sent: impl FnMut(u64) + Send + 'static,
        on_line: &mut LineSink<'_>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        const CHUNK: usize = 256 << 10;
        let chunks = futures::stream::unfold((file, 0u64), move |(mut file, sent)| {
            let mut buf = vec![0; CHUNK];
            async move {
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok((n, buf)), (file, sent + n as u64)))
                    }
                    Err(e) => Some((Err(e), (file, sent))),
                }
            }
        });
        let mut sent = 0u64;
        let frames = futures::StreamExt::map(chunks, move |r| {
            r.map(|(n, buf)| {
                sent += n as u64;
                on_sent(sent);
                hyper::body::Frame::data(Bytes::from(buf))
            })
        });
        let mut req = self
            .builder(Method::POST, path, wire::NDJSON)
            .header(CONTENT_TYPE, "application/x-tar")
            .header(hyper::header::CONTENT_LENGTH, len);
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(StreamBody::new(frames))
            .expect("request parts are valid");
        let response = send(TokioIo::new(self.connect().await?), req)
            .await
            .map_err(self.http_err())?;
        self.read_answer(response, Some(on_line)).await
    }

    /// A request's method, path, Host, Accept and the CLI's CSRF marker.
    fn builder(&self, method: Method, path: &str, accept: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.authority())
            .header(ACCEPT, accept)
            // Marks a non-browser client for the CSRF check.
            .header("x-corral-client", "cli")
    }

    async fn request_with(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        accept: &str,
        on_line: Option<&mut LineSink<'_>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.send(method, path, json, accept).await?;
        self.read_answer(response, on_line).await
    }

    /// Reads an answer: its lines to `on_line` as they arrive when it succeeded; its status
    /// and body, or its `ClientError::Api`.
    async fn read_answer(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
        mut on_line: Option<&mut LineSink<'_>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let http_err = self.http_err();
        let status = response.status();
        let body = match on_line.as_mut() {
            Some(on_line) if status.is_success() => {
                let mut body = response.into_body();
                let mut all = Vec::new();
                let mut start = 0;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.map_err(&http_err)?.into_data() {
                        all.extend_from_slice(&data);
                        while let Some(nl) = all[start..].iter().position(|b| *b == b'\n') {
                            on_line(&all[start..start + nl]);
                            start += nl + 1;
                        }
                    }
                }
                if start < all.len() {
                    on_line(&all[start..]);
                }
                Bytes::from(all)
            }
            _ => response
                .into_body()
                .collect()
                .await
                .map_err(&http_err)?
                .to_bytes(),
        };
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok((status, body))
    }
}

/// A connection to the daemon: unix socket, TCP or TLS.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// The server name to verify in `HOST:PORT` (a DNS name or an IP address).
fn server_name(addr: &str) -> Option<tokio_rustls::rustls::pki_types::ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned()).ok()
}

/// A TLS client that trusts only the PEM certificates in `ca` (the daemon's own certificate or
/// the CA that signed it), HTTP/1.1 over ALPN.
fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, ClientError> {
    use tokio_rustls::rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, pem::PemObject},
    };
    let bad = |message: String| ClientError::BadTlsCa {
        path: ca.to_owned(),
        message,
    };
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

async fn send<I, B>(
    io: I,
    req: Request<B>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
        assert_eq!(
            Host::parse("https://corral.example.com:7700").unwrap(),
            Host::Tls("corral.example.com:7700".into())
        );
        assert_eq!(
            Host::parse("https://[::1]:7700").unwrap(),
            Host::Tls("[::1]:7700".into())
        );
        assert!(server_name("192.0.2.10:7700").is_some());
        assert!(server_name("[::1]:7700").is_some());
        for bad in [
            "unix://relative",
            "https://",
            "https://a/b",
            "https://bad name:7700",
            "127.0.0.1:7700",
            "http://",
            "http://a/b",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
    }
}
