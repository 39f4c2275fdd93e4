//! A minimal HTTP/1.1 client over the daemon's unix socket that keeps its connection alive,
//! so a latency is the daemon's answer time and not a connect. Root over the socket is an
//! admin: no token is needed, only the `x-corral-client` header on state-changing requests.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// One keep-alive connection to the daemon's unix socket (reconnected when the server closes).
pub struct Conn {
    socket: PathBuf,
    stream: Option<BufReader<UnixStream>>,
}

/// A response: status and body (de-chunked).
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as JSON when the status is 2xx, else an error naming `what` and the body.
    pub fn ok_json(&self, what: &str) -> Result<serde_json::Value> {
        if !(200..300).contains(&self.status) {
            bail!(
                "{what}: status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        self.json()
    }
}

impl Conn {
    pub fn new(socket: &Path) -> Self {
        Conn {
            socket: socket.to_owned(),
            stream: None,
        }
    }

    fn stream(&mut self) -> Result<&mut BufReader<UnixStream>> {
        if self.stream.is_none() {
            let s = UnixStream::connect(&self.socket)
                .with_context(|| format!("connect {}", self.socket.display()))?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            self.stream = Some(BufReader::with_capacity(1 << 16, s));
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// One request on the kept-alive connection; one retry on a fresh connection when the old
    /// one was closed by the server before the request went out.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let reused = self.stream.is_some();
        match self.try_request(method, path, body.as_deref()) {
            Ok(r) => Ok(r),
            // The server closed the idle connection before reading the request: send it again
            // on a new one. Any other failure is not retried (a POST must not run twice).
            Err(e) if reused && e.downcast_ref::<Closed>().is_some() => {
                self.try_request(method, path, body.as_deref())
            }
            Err(e) => Err(e),
        }
    }

    pub fn get(&mut self, path: &str) -> Result<Response> {
        self.request("GET", path, None)
    }

    pub fn post(&mut self, path: &str, body: Option<&serde_json::Value>) -> Result<Response> {
        self.request("POST", path, body)
    }

    fn try_request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if method != "GET" {
            head.push_str("x-corral-client: bench\r\n");
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let result = (|| {
            let s = self.stream()?;
            let w = s.get_mut();
            let sent = w
                .write_all(head.as_bytes())
                .and_then(|()| w.write_all(body));
            if let Err(e) = sent {
                return Err(match e.kind() {
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                        Closed.into()
                    }
                    _ => e.into(),
                });
            }
            read_response(s)
        })();
        match result {
            Ok((resp, keep)) => {
                if !keep {
                    self.stream = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.stream = None;
                Err(e.context(format!("{method} {path}")))
            }
        }
    }
}

/// The server had closed the kept-alive connection: nothing of the request was answered.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before a response")
    }
}

impl std::error::Error for Closed {}

/// Reads one response; whether the connection may be reused.
fn read_response(s: &mut BufReader<UnixStream>) -> Result<(Response, bool)> {
    let mut line = String::new();
    match s.read_line(&mut line) {
        Ok(0) => return Err(Closed.into()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(Closed.into()),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        if s.read_line(&mut line)? == 0 {
            bail!("connection closed in the response head");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "connection" => keep = !v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if status == 204 || status == 304 || status < 200 {
        // No body, whatever the headers say.
    } else if chunked {
        loop {
            line.clear();
            s.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if s.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            read_n(s, size, &mut body)?;
            let mut crlf = [0u8; 2];
            s.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        read_n(s, n, &mut body)?;
    } else {
        s.read_to_end(&mut body)?;
        keep = false;
    }
    Ok((Response { status, body }, keep))
}

/// Appends exactly `n` bytes read from `s` to `body`. (Through `Read::take`, which runs in the
/// optimized std: the xtask itself is built unoptimized, and a zero-filling `resize` of a
/// 0.5 MB list body cost it ~2 ms per response, more than the daemon's answer.)
fn read_n(s: &mut BufReader<UnixStream>, n: usize, body: &mut Vec<u8>) -> Result<()> {
    let start = body.len();
    body.reserve(n);
    s.take(n as u64).read_to_end(body)?;
    if body.len() - start != n {
        bail!(
            "connection closed after {} of {n} body bytes",
            body.len() - start
        );
    }
    Ok(())
}
