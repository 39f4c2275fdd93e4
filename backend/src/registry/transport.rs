//! HTTP/1.1 to registries over hyper: HTTPS verified against the system roots, plain HTTP
//! only to hosts listed with `--insecure-registry`; redirects followed (credentials only to
//! the host they were meant for); connect and answer deadlines so an unreachable registry
//! fails quickly.

use std::{collections::BTreeSet, path::Path, sync::Arc, time::Duration};

use http_body_util::{BodyExt, Empty};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, pki_types::ServerName};

use super::RegistryError;

/// How long a TCP connect (DNS included) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answer's head may take after the request was sent.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How many redirects are followed.
const MAX_REDIRECTS: usize = 5;

/// `http` or `https`, a `HOST[:PORT]` and the path with its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub authority: String,
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            (false, s.strip_prefix("http://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        Some(Url {
            https,
            authority: authority.to_ascii_lowercase(),
            path,
        })
    }

    /// `Location` resolved against this URL (absolute, or a path on the same host).
    fn join(&self, location: &str) -> Option<Url> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Url::parse(location);
        }
        if location.starts_with("//") {
            let scheme = if self.https { "https:" } else { "http:" };
            return Url::parse(&format!("{scheme}{location}"));
        }
        if location.starts_with('/') {
            return Some(Url {
                path: location.to_owned(),
                ..self.clone()
            });
        }
        None
    }

    /// The host without port or brackets, for TLS.
    fn host(&self) -> &str {
        let a = self.authority.as_str();
        if let Some(v6) = a.strip_prefix('[') {
            return v6.split(']').next().unwrap_or(v6);
        }
        a.rsplit_once(':').map_or(a, |(h, _)| h)
    }

    /// `HOST:PORT` to connect to (443 or 80 when none is given).
    fn socket_addr(&self) -> String {
        let a = self.authority.as_str();
        let has_port = if a.starts_with('[') {
            a.contains("]:")
        } else {
            a.contains(':')
        };
        if has_port {
            a.to_owned()
        } else {
            format!("{a}:{}", if self.https { 443 } else { 80 })
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

/// Opens connections and sends requests to registries.
#[derive(Clone)]
pub struct Transport {
    /// The client config over the system roots, or why there is none.
    tls: Result<Arc<ClientConfig>, String>,
    /// `HOST:PORT`s that may be spoken to in plain HTTP.
    insecure: Arc<BTreeSet<String>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// The registry client's TLS: the system's roots, HTTP/1.1 over ALPN.
fn tls_config(roots: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut config = crate::tls::client_config(roots)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection: plain TCP or TLS.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

impl Transport {
    /// `roots`: the PEM bundle of trusted CAs; `insecure`: normalized `HOST[:PORT]`s.
    pub fn new(roots: &Path, insecure: BTreeSet<String>) -> Self {
        Self {
            tls: tls_config(roots),
            insecure: Arc::new(insecure),
        }
    }

    /// Whether `authority` may be spoken to in plain HTTP.
    pub fn is_insecure(&self, authority: &str) -> bool {
        self.insecure.contains(authority)
    }

    async fn connect(&self, url: &Url) -> Result<Box<dyn Conn>, RegistryError> {
        if !url.https && !self.is_insecure(&url.authority) {
            return Err(RegistryError::PlainHttp {
                url: url.to_string(),
            });
        }
        let addr = url.socket_addr();
        let unreachable = |message: String| RegistryError::Unreachable {
            host: url.authority.clone(),
            message,
        };
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        if !url.https {
            return Ok(Box::new(tcp));
        }
        let tls_err = |message: String| RegistryError::Tls {
            host: url.authority.clone(),
            message,
            insecure_hint: !self.is_insecure(&url.authority),
        };
        let config = self.tls.clone().map_err(tls_err)?;
        let name = ServerName::try_from(url.host().to_owned())
            .map_err(|e| tls_err(format!("bad server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(HEAD_TIMEOUT, connector.connect(name, tcp)).await {
            Err(_) => Err(tls_err("the handshake timed out".into())),
            Ok(Err(e)) => Err(tls_err(e.to_string())),
            Ok(Ok(s)) => Ok(Box::new(s)),
        }
    }

    /// Sends one GET (or HEAD) without following redirects.
    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Response<Incoming>, RegistryError> {
        let conn = self.connect(url).await?;
        let broken = |e: hyper::Error| RegistryError::Unreachable {
            host: url.authority.clone(),
            message: e.to_string(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
            .await
            .map_err(broken)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url.path)
            .header(header::HOST, &url.authority)
            .header(
                header::USER_AGENT,
                concat!("corral/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| RegistryError::Unreachable {
                host: url.authority.clone(),
                message: e.to_string(),
            })?;
        match tokio::time::timeout(HEAD_TIMEOUT, sender.send_request(req)).await {
            Err(_) => Err(RegistryError::Unreachable {
                host: url.authority.clone(),
                message: format!("no answer within {} s", HEAD_TIMEOUT.as_secs()),
            }),
            Ok(r) => r.map_err(broken),
        }
    }

    /// Sends a request, following redirects; `auth` goes only to `url`'s own host.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        auth: Option<&str>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<(Url, Response<Incoming>), RegistryError> {
        let mut at = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut h = headers.to_vec();
            if let Some(a) = auth
                && at.authority == url.authority
            {
                h.push((header::AUTHORIZATION, a.to_owned()));
            }
            let resp = self.send_once(&method, &at, &h).await?;
            if !matches!(
                resp.status(),
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            ) {
                return Ok((at, resp));
            }
            let next = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| at.join(l))
                .ok_or_else(|| RegistryError::Upstream {
                    host: at.authority.clone(),
                    status: resp.status().as_u16(),
                    message: "a redirect without a usable Location".into(),
                })?;
            // Never from HTTPS down to plain HTTP, unless that host is listed as insecure.
            if at.https && !next.https && !self.is_insecure(&next.authority) {
                return Err(RegistryError::PlainHttp {
                    url: next.to_string(),
                });
            }
            at = next;
        }
        Err(RegistryError::Upstream {
            host: url.authority.clone(),
            status: 310,
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// Reads a whole (small) body, at most `cap` bytes.
pub async fn read_capped(body: Incoming, cap: u64, host: &str) -> Result<Vec<u8>, RegistryError> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = read_frame(&mut body, host).await? {
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > cap {
                return Err(RegistryError::Upstream {
                    host: host.to_owned(),
                    status: 200,
                    message: format!("an answer larger than {cap} bytes"),
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// How long a body may send nothing.
pub const BODY_IDLE: Duration = Duration::from_secs(60);

/// The next frame of `body`, or the error that broke it (idle for [`BODY_IDLE`] included).
pub async fn read_frame(
    body: &mut Incoming,
    host: &str,
) -> Result<Option<hyper::body::Frame<Bytes>>, RegistryError> {
    match tokio::time::timeout(BODY_IDLE, body.frame()).await {
        Err(_) => Err(RegistryError::Broken {
            host: host.to_owned(),
            message: format!("nothing arrived for {} s", BODY_IDLE.as_secs()),
        }),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(RegistryError::Broken {
            host: host.to_owned(),
            message: e.to_string(),
        }),
        Ok(Some(Ok(f))) => Ok(Some(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let u = Url::parse("https://auth.docker.io/token?service=x").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "auth.docker.io");
        assert_eq!(u.path, "/token?service=x");
        assert_eq!(u.socket_addr(), "auth.docker.io:443");
        let u = Url::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(u.path, "/");
        assert_eq!(u.socket_addr(), "127.0.0.1:5000");
        assert_eq!(u.host(), "127.0.0.1");
        let j = u.join("/v2/x").unwrap();
        assert_eq!(j.to_string(), "http://127.0.0.1:5000/v2/x");
        let j = u.join("https://cdn.example/blob?sig=1").unwrap();
        assert_eq!(j.authority, "cdn.example");
        assert_eq!(Url::parse("https://[::1]:5000/x").unwrap().host(), "::1");
        assert!(Url::parse("ftp://x").is_none());
        assert!(Url::parse("https://user@x/").is_none());
        assert!(u.join("relative").is_none());
    }
}
