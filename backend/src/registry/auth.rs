//! Registry credentials and the `WWW-Authenticate` challenge.
//!
//! `corral login` keeps credentials in `<state>/registries/auth.json` (the directory 0700, the
//! file 0600, written tmp → fsync → rename), in docker's `config.json` shape
//! (`{"auths": {"HOST": {"auth": base64("user:password")}}}`). A pull looks there first, then
//! in the daemon user's `~/.docker/config.json` (`auths` only; credential helpers are not run).

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{RegistryError, reference::DOCKER_HUB};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl Credentials {
    /// `Basic base64(user:password)`.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

impl AuthEntry {
    fn credentials(&self) -> Option<Credentials> {
        if let Some(a) = &self.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()?;
            let raw = String::from_utf8(raw).ok()?;
            let (u, p) = raw.split_once(':')?;
            return Some(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            });
        }
        Some(Credentials {
            username: self.username.clone()?,
            password: self.password.clone()?,
        })
    }
}

/// The keys a registry may be filed under in a docker config (Docker Hub has several).
fn keys_of(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        vec![
            "docker.io".into(),
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![
            registry.to_owned(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    }
}

fn lookup(file: &AuthFile, registry: &str) -> Option<Credentials> {
    let keys = keys_of(registry);
    file.auths
        .iter()
        .find(|(k, _)| {
            keys.iter()
                .any(|want| k.trim_end_matches('/') == want.trim_end_matches('/'))
        })
        .and_then(|(_, e)| e.credentials())
}

/// The daemon's credentials file and the docker config it falls back to.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
    docker_config: Option<PathBuf>,
}

impl CredentialStore {
    /// Credentials under `<state>/registries`; `docker_config` is read too (not written).
    pub fn new(state_dir: &Path, docker_config: Option<PathBuf>) -> Self {
        Self {
            dir: state_dir.join("registries"),
            docker_config,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("auth.json")
    }

    fn read_own(&self) -> Result<AuthFile, RegistryError> {
        let p = self.path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| RegistryError::Credentials {
                path: p,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(RegistryError::Credentials {
                path: p,
                message: e.to_string(),
            }),
        }
    }

    /// The credentials for `registry` (normalized): `corral login`'s, else the docker
    /// config's.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(c) = lookup(&self.read_own()?, registry) {
            return Ok(Some(c));
        }
        let Some(p) = &self.docker_config else {
            return Ok(None);
        };
        // A docker config that cannot be read or parsed is not ours: it lends nothing.
        let file = fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<AuthFile>(&b).ok());
        Ok(file.and_then(|f| lookup(&f, registry)))
    }

    /// Stores `creds` for `registry`, replacing what was there.
    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let mut file = self.read_own()?;
        let raw = format!("{}:{}", creds.username, creds.password);
        file.auths.insert(
            registry.to_owned(),
            AuthEntry {
                auth: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                ..AuthEntry::default()
            },
        );
        self.write(&file)
    }

    /// Forgets `registry`'s credentials; whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut file = self.read_own()?;
        let keys = keys_of(registry);
        let before = file.auths.len();
        file.auths.retain(|k, _| !keys.contains(k));
        if file.auths.len() == before {
            return Ok(false);
        }
        self.write(&file)?;
        Ok(true)
    }

    /// tmp (0600) → fsync → rename → fsync dir; the directory is created 0700.
    fn write(&self, file: &AuthFile) -> Result<(), RegistryError> {
        let err = |p: &Path, e: std::io::Error| RegistryError::Credentials {
            path: p.to_owned(),
            message: e.to_string(),
        };
        if !self.dir.is_dir() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&self.dir)
                .map_err(|e| err(&self.dir, e))?;
        }
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| err(&self.dir, e))?;
        let p = self.path();
        let tmp = self.dir.join("auth.json.tmp");
        let _ = fs::remove_file(&tmp);
        let data = serde_json::to_vec_pretty(file).unwrap_or_default();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(&tmp, e))?;
        f.write_all(&data).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &p).map_err(|e| err(&p, e))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="…",service="…",scope="…"`: get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// `Basic realm="…"`: send the credentials with each request.
    Basic,
}

/// Parses the first challenge of a `WWW-Authenticate` value (`Bearer` or `Basic`).
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end?;
            (out, &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="http://x/t", scope="a,b""#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None,
                scope: Some("a,b".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn credentials_are_kept_0600_and_found_under_docker_aliases() {
        let dir = std::env::temp_dir().join(format!("corral-creds-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let docker = dir.join("config.json");
        fs::write(
            &docker,
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="}}}"#,
        )
        .unwrap();
        let s = CredentialStore::new(&dir, Some(docker));
        assert_eq!(s.get("quay.io").unwrap(), None);
        let hub = s.get("docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        s.set("127.0.0.1:5000", &c).unwrap();
        assert_eq!(s.get("127.0.0.1:5000").unwrap(), Some(c));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("registries")), 0o700);
        assert_eq!(mode(&dir.join("registries/auth.json")), 0o600);
        assert!(s.remove("127.0.0.1:5000").unwrap());
        assert!(!s.remove("127.0.0.1:5000").unwrap());
        assert_eq!(s.get("127.0.0.1:5000").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
