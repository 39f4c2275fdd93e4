//! One repository of one registry: the `/v2/` API with its authentication (a `Bearer` token
//! from the challenge's realm, anonymous or with credentials; or `Basic`), manifests, and
//! blobs streamed to disk with their sha256 checked as they arrive.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use hyper::{Method, Response, StatusCode, body::Incoming, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    RegistryError,
    auth::{Challenge, Credentials, parse_challenge},
    reference::Reference,
    transport::{Transport, Url, read_capped, read_frame},
};

/// Largest manifest, index, config or token answer read.
pub const MAX_SMALL: u64 = 4 << 20;
/// Attempts of one blob download (the first and its retries, each resuming with `Range`).
const ATTEMPTS: u32 = 4;

/// Every manifest type a pull understands, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A manifest as served: its bytes, media type (`Content-Type`, else its `mediaType`) and
/// the sha256 of its bytes.
#[derive(Debug)]
pub struct Served {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The error body of the distribution spec: `{"errors": [{"code", "message"}]}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn describe(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.errors.is_empty() => b
            .errors
            .iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code.clone()
                } else {
                    format!("{}: {}", e.code, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

/// A token answer: `token` or `access_token`.
#[derive(Debug, Deserialize)]
struct TokenBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Talks to one repository.
pub struct Session<'a> {
    transport: &'a Transport,
    /// `http(s)://HOST[:PORT]` of the registry API.
    base: Url,
    /// Normalized registry name (`docker.io`), for messages.
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    /// The `Authorization` value in use, once a challenge was answered.
    auth: Option<String>,
}

impl<'a> Session<'a> {
    pub fn new(transport: &'a Transport, r: &Reference, creds: Option<Credentials>) -> Self {
        let host = r.api_host().to_owned();
        let https = !transport.is_insecure(&r.registry) && !transport.is_insecure(&host);
        Self {
            transport,
            base: Url {
                https,
                authority: host,
                path: "/".into(),
            },
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            creds,
            auth: None,
        }
    }

    /// A session for `corral login`'s check: the `/v2/` root of `registry`.
    pub fn root(transport: &'a Transport, registry: &str, creds: Credentials) -> Self {
        let r = Reference {
            registry: registry.to_owned(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        Self::new(transport, &r, Some(creds))
    }

    fn url(&self, path: &str) -> Url {
        Url {
            path: path.to_owned(),
            ..self.base.clone()
        }
    }

    fn host(&self) -> &str {
        &self.base.authority
    }

    /// Fetches a token for the challenge, with the credentials when there are some.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let mut url = Url::parse(realm).ok_or_else(|| RegistryError::Upstream {
            host: self.host().to_owned(),
            status: 401,
            message: format!("a token realm that is not an http(s) URL: {realm:?}"),
        })?;
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        if let Some(s) = scope {
            query.push(format!("scope={}", encode(s)));
        }
        if !query.is_empty() {
            let sep = if url.path.contains('?') { '&' } else { '?' };
            url.path = format!("{}{sep}{}", url.path, query.join("&"));
        }
        let basic = self.creds.as_ref().map(Credentials::basic);
        let (_, resp) = self
            .transport
            .send(Method::GET, &url, basic.as_deref(), &[])
            .await?;
        let status = resp.status();
        let body = read_capped(resp.into_body(), MAX_SMALL, &url.authority).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(describe(&body)));
        }
        if !status.is_success() {
            return Err(RegistryError::Upstream {
                host: url.authority,
                status: status.as_u16(),
                message: format!("the token service refused: {}", describe(&body)),
            });
        }
        let t: TokenBody = serde_json::from_slice(&body).map_err(|e| RegistryError::Upstream {
            host: url.authority.clone(),
            status: status.as_u16(),
            message: format!("the token answer is not JSON with a token: {e}"),
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| RegistryError::Upstream {
                host: url.authority,
                status: status.as_u16(),
                message: "the token answer holds no token".into(),
            })
    }

    fn unauthorized(&self, detail: String) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            with_credentials: self.creds.is_some(),
            detail,
        }
    }

    /// GET `path` on the registry, answering one authentication challenge. Refusals become
    /// errors (404 → `what` unknown, 401/403, 429); the answer's URL (after redirects) and
    /// head come back with the body unread.
    async fn get(
        &mut self,
        path: &str,
        headers: &[(header::HeaderName, String)],
        what: &str,
    ) -> Result<(Url, Response<Incoming>), RegistryError> {
        let url = self.url(path);
        let mut answered = false;
        loop {
            let (at, resp) = self
                .transport
                .send(Method::GET, &url, self.auth.as_deref(), headers)
                .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !answered {
                answered = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                match challenge {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    }) => {
                        let scope = scope.or_else(|| {
                            (!self.repository.is_empty())
                                .then(|| format!("repository:{}:pull", self.repository))
                        });
                        self.auth = Some(
                            self.token(&realm, service.as_deref(), scope.as_deref())
                                .await?,
                        );
                        continue;
                    }
                    Some(Challenge::Basic) if self.creds.is_some() => {
                        self.auth = self.creds.as_ref().map(Credentials::basic);
                        continue;
                    }
                    _ => {}
                }
            }
            if status.is_success() {
                return Ok((at, resp));
            }
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = read_capped(resp.into_body(), MAX_SMALL, &at.authority)
                .await
                .unwrap_or_default();
            let detail = describe(&body);
            return Err(match status {
                StatusCode::NOT_FOUND => RegistryError::NotFound {
                    what: what.to_owned(),
                    detail,
                },
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.unauthorized(detail),
                StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
                    registry: self.registry.clone(),
                    retry_after,
                    detail,
                },
                s => RegistryError::Upstream {
                    host: at.authority,
                    status: s.as_u16(),
                    message: detail,
                },
            });
        }
    }

    /// Checks the credentials: `GET /v2/` must answer 200 once the challenge is answered.
    pub async fn check_login(&mut self) -> Result<(), RegistryError> {
        let (_, resp) = self.get("/v2/", &[], "the registry's API root").await?;
        let _ = read_capped(resp.into_body(), MAX_SMALL, &self.base.authority.clone()).await;
        Ok(())
    }

    /// The manifest (or index) `reference` (a tag or a digest) names.
    pub async fn manifest(
        &mut self,
        reference: &str,
        shown: &str,
    ) -> Result<Served, RegistryError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let (at, resp) = self
            .get(&path, &[(header::ACCEPT, ACCEPT.to_owned())], shown)
            .await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            .unwrap_or_default();
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_capped(resp.into_body(), MAX_SMALL, &at.authority).await?;
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        // A registry that names a digest must serve bytes that have it.
        if let Some(a) = announced
            && a.starts_with("sha256:")
            && a != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("the manifest of {shown}"),
                expected: a,
                actual: digest,
            });
        }
        #[derive(Deserialize)]
        struct MediaType {
            #[serde(rename = "mediaType", default)]
            media_type: String,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let media_type = if content_type.contains("vnd.") {
            content_type
        } else {
            // No type in the header: the document's own, else what its shape says (an OCI
            // index may leave `mediaType` out).
            match serde_json::from_slice::<MediaType>(&bytes) {
                Ok(m) if !m.media_type.is_empty() => m.media_type,
                Ok(m) if m.manifests.is_some() => {
                    "application/vnd.oci.image.index.v1+json".to_owned()
                }
                _ => String::new(),
            }
        };
        Ok(Served {
            bytes,
            media_type,
            digest,
        })
    }

    /// A small blob (the image config), whose digest must be `digest`.
    pub async fn small_blob(&mut self, digest: &str, what: &str) -> Result<Vec<u8>, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let (at, resp) = self.get(&path, &[], what).await?;
        let bytes = read_capped(resp.into_body(), MAX_SMALL, &at.authority).await?;
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: what.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams blob `digest` of `size` bytes into `dest`, hashing as it arrives; a broken
    /// transfer is resumed with `Range` (up to [`ATTEMPTS`] tries). The file is removed
    /// unless all `size` bytes arrived and hash to `digest`. `on` hears the bytes so far.
    pub async fn blob_to_file(
        &mut self,
        digest: &str,
        size: u64,
        dest: &Path,
        what: &str,
        on: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), RegistryError> {
        let r = self.blob_attempts(digest, size, dest, what, on).await;
        if r.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        r
    }

    async fn blob_attempts(
        &mut self,
        digest: &str,
        size: u64,
        dest: &Path,
        what: &str,
        on: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), RegistryError> {
        let io = |e: std::io::Error| RegistryError::Io {
            path: dest.to_owned(),
            message: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(io)?;
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let range = (have > 0).then(|| (header::RANGE, format!("bytes={have}-")));
            let r = async {
                let (at, resp) = self.get(&path, range.as_slice(), what).await?;
                if have > 0 && resp.status() == StatusCode::PARTIAL_CONTENT {
                    tracing::info!(digest, have, size, "blob download resumed with Range");
                }
                if have > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
                    // The registry sends the whole blob again: start over.
                    file.set_len(0).map_err(io)?;
                    std::io::Seek::rewind(&mut file).map_err(io)?;
                    hasher = Sha256::new();
                    have = 0;
                }
                let mut body = resp.into_body();
                let mut last = Instant::now();
                while let Some(frame) = read_frame(&mut body, &at.authority).await? {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if have + data.len() as u64 > size {
                        return Err(RegistryError::DigestMismatch {
                            what: what.to_owned(),
                            expected: format!("{digest} ({size} bytes)"),
                            actual: format!("more than {size} bytes"),
                        });
                    }
                    file.write_all(&data).map_err(io)?;
                    hasher.update(&data);
                    have += data.len() as u64;
                    if last.elapsed() >= Duration::from_millis(100) || have == size {
                        last = Instant::now();
                        on(have);
                    }
                    #[cfg(feature = "fault-injection")]
                    if attempt == 1
                        && have >= size / 2
                        && std::env::var_os("CORRAL_FAULT_REGISTRY_CUT").is_some()
                    {
                        return Err(RegistryError::Broken {
                            host: at.authority.clone(),
                            message: "cut by fault injection".into(),
                        });
                    }
                }
                Ok(())
            }
            .await;
            match r {
                Ok(()) if have == size => break,
                Ok(()) => {
                    if attempt >= ATTEMPTS {
                        return Err(RegistryError::Broken {
                            host: self.base.authority.clone(),
                            message: format!(
                                "{what}: the transfer ended after {have} of {size} bytes"
                            ),
                        });
                    }
                }
                Err(e @ RegistryError::Broken { .. }) if attempt < ATTEMPTS => {
                    tracing::info!(error = %e, have, size, attempt, "blob download broke off: resuming");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
        file.sync_all().map_err(io)?;
        let actual = format!(
            "sha256:{}",
            hasher
                .finalize()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        );
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: what.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(())
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{
        Router,
        extract::{Path, Query, State},
        http::{HeaderMap, StatusCode, header},
        response::IntoResponse,
        routing::get,
    };

    use super::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:0","size":1},"layers":[]}"#;

    /// A registry that wants a bearer token from its own `/token`: `public` takes the
    /// anonymous token, `private` only `u`'s; `limited` answers 429.
    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        async fn manifest(
            State(addr): State<String>,
            Path((repo, _tag)): Path<(String, String)>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            if repo == "limited" {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "17")],
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                )
                    .into_response();
            }
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ok = match repo.as_str() {
                "public" => auth == "Bearer tok-anon" || auth == "Bearer tok-u",
                _ => auth == "Bearer tok-u",
            };
            if ok {
                return (
                    [(
                        header::CONTENT_TYPE,
                        "application/vnd.oci.image.manifest.v1+json",
                    )],
                    MANIFEST,
                )
                    .into_response();
            }
            let challenge = format!(
                r#"Bearer realm="http://{addr}/token",service="mock",scope="repository:{repo}:pull""#
            );
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
                .into_response()
        }
        async fn token(
            Query(q): Query<std::collections::HashMap<String, String>>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            assert_eq!(q.get("service").map(String::as_str), Some("mock"));
            assert!(
                q.get("scope").is_some_and(|s| s.ends_with(":pull")),
                "{q:?}"
            );
            match headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            {
                None => r#"{"token":"tok-anon"}"#.into_response(),
                Some(a)
                    if a == Credentials {
                        username: "u".into(),
                        password: "p w".into(),
                    }
                    .basic() =>
                {
                    r#"{"access_token":"tok-u"}"#.into_response()
                }
                Some(_) => StatusCode::UNAUTHORIZED.into_response(),
            }
        }
        let app = Router::new()
            .route("/v2/{repo}/manifests/{tag}", get(manifest))
            .route("/token", get(token))
            .with_state(addr.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    async fn fetch(
        addr: &str,
        repo: &str,
        creds: Option<(&str, &str)>,
    ) -> Result<Served, RegistryError> {
        let transport = Transport::new(
            std::path::Path::new("/nonexistent"),
            BTreeSet::from([addr.to_owned()]),
        );
        let r = Reference::parse(&format!("{addr}/{repo}:1")).unwrap();
        let creds = creds.map(|(u, p)| Credentials {
            username: u.into(),
            password: p.into(),
        });
        let mut s = Session::new(&transport, &r, creds);
        s.manifest("1", repo).await
    }

    #[tokio::test]
    async fn bearer_tokens_anonymous_and_with_credentials() {
        let addr = serve().await;
        let m = fetch(&addr, "public", None).await.unwrap();
        assert_eq!(m.bytes, MANIFEST.as_bytes());
        assert_eq!(
            m.digest,
            format!("sha256:{}", sha256_hex(MANIFEST.as_bytes()))
        );
        assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");

        let e = fetch(&addr, "private", None).await.unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::Unauthorized {
                    with_credentials: false,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("corral login"), "{e}");
        fetch(&addr, "private", Some(("u", "p w"))).await.unwrap();
        let e = fetch(&addr, "private", Some(("u", "wrong")))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::Unauthorized {
                    with_credentials: true,
                    ..
                }
            ),
            "{e:?}"
        );

        let e = fetch(&addr, "limited", None).await.unwrap_err();
        assert!(
            matches!(&e, RegistryError::RateLimited { retry_after: Some(r), .. } if r == "17"),
            "{e:?}"
        );
        assert_eq!(e.code(), "registry_rate_limited");
    }
}
