//! Image references as `docker pull` reads them: `busybox` is `docker.io/library/busybox:latest`,
//! `user/app` is on Docker Hub too, a first component with a `.` or `:` (or `localhost`) is a
//! registry (`ghcr.io/org/app`, `127.0.0.1:5000/app`), `:TAG` and `@sha256:<hex>` at the end.

use super::RegistryError;

/// Docker Hub's name in references and in the credentials file.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]`; `docker.io` for Docker Hub (whatever alias was written).
    pub registry: String,
    /// The repository path in the registry (`library/busybox`, `org/app`).
    pub repository: String,
    /// The tag, when one was given or implied (`latest` unless a digest is given alone).
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins a manifest.
    pub digest: Option<String>,
}

fn bad(reference: &str, why: &str) -> RegistryError {
    RegistryError::BadReference {
        reference: reference.to_owned(),
        message: why.to_owned(),
    }
}

/// A path component: lowercase letters and digits, separated by one `.`, one or two `_`, or
/// any number of `-` (the distribution spec's grammar).
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || sep.is_empty() {
            return false;
        }
    }
    true
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn host_ok(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || n.starts_with('[') => (n, Some(p)),
        _ => (h, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return false;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `sha256:<64 lowercase hex>`.
pub fn digest_ok(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// A registry name as given to `corral login` or `--insecure-registry`: `HOST[:PORT]`, a
/// scheme and a trailing `/` (or `/v1/`, docker's key for Docker Hub) dropped, Docker Hub's
/// aliases folded into `docker.io`.
pub fn normalize_registry(r: &str) -> Result<String, RegistryError> {
    let s = r.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches("/v2");
    let s = s.to_ascii_lowercase();
    if !host_ok(&s) {
        return Err(RegistryError::BadRegistry(r.to_owned()));
    }
    Ok(match s.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => s,
    })
}

impl Reference {
    pub fn parse(reference: &str) -> Result<Self, RegistryError> {
        let r = reference.trim();
        if r.is_empty() || r.len() > 512 {
            return Err(bad(reference, "must be 1 to 512 characters"));
        }
        let (rest, digest) = match r.split_once('@') {
            Some((n, d)) => {
                if !digest_ok(d) {
                    return Err(bad(
                        reference,
                        "the digest must be sha256: and 64 hex digits",
                    ));
                }
                (n, Some(d.to_owned()))
            }
            None => (r, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, more))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (
                    normalize_registry(first).map_err(|_| bad(reference, "bad registry host"))?,
                    more,
                )
            }
            _ => (DOCKER_HUB.to_owned(), rest),
        };
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => {
                if !tag_ok(t) {
                    return Err(bad(
                        reference,
                        "a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with . or -",
                    ));
                }
                (p, Some(t.to_owned()))
            }
            _ => (path, None),
        };
        if !path.split('/').all(component_ok) {
            return Err(bad(
                reference,
                "a repository is lowercase [a-z0-9] components separated by / (and ., _ or - inside)",
            ));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if repository.len() > 255 {
            return Err(bad(
                reference,
                "the repository name is longer than 255 characters",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `HOST[:PORT]` the registry API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The name as docker shows it: `busybox` for `docker.io/library/busybox`, `user/app` for
    /// Docker Hub's other repositories, `HOST/REPO` elsewhere.
    pub fn familiar(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The name the pulled image is stored under: `NAME:TAG`, or `NAME@sha256:…` for a
    /// digest alone.
    pub fn stored_name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}:{t}", self.familiar()),
            (None, Some(d)) => format!("{}@{d}", self.familiar()),
            (None, None) => format!("{}:latest", self.familiar()),
        }
    }

    /// What the manifest is asked for by: the digest when there is one, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse_like_docker() {
        let p = |r: &str| Reference::parse(r).unwrap();
        let r = p("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.stored_name(), "busybox:latest");
        let r = p("user/app:1.2");
        assert_eq!(r.repository, "user/app");
        assert_eq!(r.stored_name(), "user/app:1.2");
        let r = p("docker.io/library/alpine:3.20");
        assert_eq!(r.stored_name(), "alpine:3.20");
        let r = p("index.docker.io/library/alpine");
        assert_eq!(r.registry, "docker.io");
        let r = p("127.0.0.1:5000/team/app:v2");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(r.stored_name(), "127.0.0.1:5000/team/app:v2");
        let r = p("localhost/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "app")
        );
        let r = p(&format!("ghcr.io/org/app@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.stored_name(), format!("ghcr.io/org/app@{D}"));
        let r = p(&format!("localhost:5000/app:v1@{D}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("localhost:5000/app:v1@{D}"));
        let r = p("[::1]:5000/app");
        assert_eq!(r.registry, "[::1]:5000");
    }

    #[test]
    fn bad_references_are_refused() {
        for r in [
            "",
            "UPPER",
            "a//b",
            "a/",
            "-a",
            "a:",
            "a:-x",
            "a@sha256:12",
            "a@md5:0123",
            "host:0/a",
            "host:99999/a",
            "a b",
            "a/../b",
            "a:b/c",
            "bad_host_.io/x",
        ] {
            assert!(Reference::parse(r).is_err(), "{r:?} parsed");
        }
    }

    #[test]
    fn registry_names_normalize() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/").unwrap(),
            "docker.io"
        );
        assert_eq!(
            normalize_registry("127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_registry("Quay.IO").unwrap(), "quay.io");
        assert!(normalize_registry("a/b").is_err());
        assert!(normalize_registry("host:x").is_err());
    }
}
