//! xterm.js for the dashboard's terminal: the npm tarballs of `@xterm/xterm` and
//! `@xterm/addon-fit`, pinned by version and by npm's SHA-512 `dist.integrity`, fetched once
//! into `target/tools/npm`, checked on every build (a cached file is checked too), and
//! unpacked into `target/ui/vendor/xterm-<version>/`, from where `backend/build.rs` embeds
//! them like every other dashboard file. Nothing else of the packages is copied.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use sha2::{Digest, Sha512};

/// The xterm.js release the dashboard embeds.
pub const XTERM_VERSION: &str = "5.5.0";

/// One pinned npm package and the files taken from it.
struct Package {
    name: &'static str,
    version: &'static str,
    /// npm's `dist.integrity` of the tarball (`sha512-<base64>`).
    integrity: &'static str,
    /// `(path inside the tarball, file name written)`.
    files: &'static [(&'static str, &'static str)],
}

const PACKAGES: [Package; 2] = [
    Package {
        name: "@xterm/xterm",
        version: XTERM_VERSION,
        integrity: "sha512-hqJHYaQb5OptNunnyAnkHyM8aCjZ1MEIDTQu1iIbbTD/xops91NB5yq1ZK/dC2JDbVWtF23zUtl9JE2NqwT87A==",
        files: &[
            ("package/lib/xterm.js", "xterm.js"),
            ("package/css/xterm.css", "xterm.css"),
            ("package/LICENSE", "LICENSE"),
        ],
    },
    Package {
        // 0.10 is the fit addon for xterm 5 (its peer dependency is `@xterm/xterm ^5.0.0`).
        name: "@xterm/addon-fit",
        version: "0.10.0",
        integrity: "sha512-UFYkDm4HUahf2lnEyHvio51TNGiLK66mqP2JoATy7hRZeXaGMRDr00JiSF7m63vR5WKATF605yEggJKsw0JpMQ==",
        files: &[("package/lib/addon-fit.js", "addon-fit.js")],
    },
];

/// The URL directory the files are served from (`index.html`'s `{{XTERM}}`).
pub fn url_dir() -> String {
    format!("/vendor/xterm-{XTERM_VERSION}")
}

/// Fetches (or reuses), verifies and unpacks the pinned packages into `ui_dir` + [`url_dir`].
pub fn vendor(target: &Path, ui_dir: &Path) -> Result<()> {
    let cache = target.join("tools/npm");
    fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let out = ui_dir.join(url_dir().trim_start_matches('/'));
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    for p in &PACKAGES {
        let tgz = fetch_verified(p, &cache)?;
        unpack(p, &tgz, &out)?;
    }
    Ok(())
}

/// `https://registry.npmjs.org/@xterm/xterm/-/xterm-5.5.0.tgz`
fn tarball_url(p: &Package) -> String {
    let base = p.name.rsplit('/').next().unwrap_or(p.name);
    format!(
        "https://registry.npmjs.org/{}/-/{base}-{}.tgz",
        p.name, p.version
    )
}

/// The cached tarball, downloaded first when absent; refused unless it matches the pin.
fn fetch_verified(p: &Package, cache: &Path) -> Result<PathBuf> {
    let file = cache.join(format!(
        "{}-{}.tgz",
        p.name.trim_start_matches('@').replace('/', "-"),
        p.version
    ));
    if !file.is_file() {
        let url = tarball_url(p);
        println!("==> fetching {}@{} from {url}", p.name, p.version);
        let part = file.with_extension("tgz.part");
        // A fresh Debian has no curl unless rustup's installer brought it.
        super::apt_install(&[("curl", "curl")])?;
        let ok = Command::new("curl")
            .args(["--fail", "--silent", "--show-error", "--location"])
            .args(["--retry", "3", "--output"])
            .arg(&part)
            .arg(&url)
            .status()
            .context("run curl")?
            .success();
        if !ok {
            let _ = fs::remove_file(&part);
            bail!("downloading {url} failed");
        }
        // Checked before it takes the cached name, so a bad download is never reused.
        let bytes = fs::read(&part).with_context(|| format!("read {}", part.display()))?;
        if let Err(e) = check_integrity(p, &bytes) {
            let _ = fs::remove_file(&part);
            return Err(e.context(format!("downloaded from {url}")));
        }
        fs::rename(&part, &file).with_context(|| format!("rename to {}", file.display()))?;
    }
    let bytes = fs::read(&file).with_context(|| format!("read {}", file.display()))?;
    check_integrity(p, &bytes).with_context(|| {
        format!(
            "cached file {} (delete it to fetch it again)",
            file.display()
        )
    })?;
    Ok(file)
}

/// Compares the tarball's SHA-512 with the pinned npm integrity string.
fn check_integrity(p: &Package, bytes: &[u8]) -> Result<()> {
    let got = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    );
    if got != p.integrity {
        bail!(
            "integrity mismatch for {}@{}: expected {}, got {got}; refusing to embed it",
            p.name,
            p.version,
            p.integrity
        );
    }
    Ok(())
}

/// Writes the package's chosen files (only those) into `out`.
fn unpack(p: &Package, tgz: &Path, out: &Path) -> Result<()> {
    let f = fs::File::open(tgz).with_context(|| format!("open {}", tgz.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut found = 0;
    for entry in archive
        .entries()
        .with_context(|| format!("read {}", tgz.display()))?
    {
        let mut entry = entry.with_context(|| format!("read {}", tgz.display()))?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some((_, name)) = p.files.iter().find(|(inside, _)| *inside == path) else {
            continue;
        };
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .with_context(|| format!("read {path} of {}", tgz.display()))?;
        // The source maps are not shipped: drop the comment that would make devtools ask.
        if name.ends_with(".js") {
            strip_source_map(&mut data);
        }
        let dest = out.join(name);
        fs::write(&dest, data).with_context(|| format!("write {}", dest.display()))?;
        found += 1;
    }
    if found != p.files.len() {
        bail!(
            "{}@{}: expected {} files ({}) in {}, found {found}",
            p.name,
            p.version,
            p.files.len(),
            p.files.iter().map(|f| f.0).collect::<Vec<_>>().join(", "),
            tgz.display()
        );
    }
    Ok(())
}

/// Removes a trailing `//# sourceMappingURL=...` line.
fn strip_source_map(js: &mut Vec<u8>) {
    const MARK: &[u8] = b"\n//# sourceMappingURL=";
    if let Some(at) = js.windows(MARK.len()).rposition(|w| w == MARK)
        && !js[at + 1..].contains(&b'\n')
    {
        js.truncate(at + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_checked() {
        let p = Package {
            name: "x",
            version: "1",
            // SHA-512 of the empty input.
            integrity: "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
            files: &[],
        };
        assert!(check_integrity(&p, b"").is_ok());
        let e = check_integrity(&p, b"tampered").unwrap_err().to_string();
        assert!(e.contains("integrity mismatch for x@1"), "{e}");
    }

    #[test]
    fn source_map_comment_is_dropped() {
        let mut js = b"a();\n//# sourceMappingURL=x.js.map".to_vec();
        strip_source_map(&mut js);
        assert_eq!(js, b"a();\n");
        let mut js = b"a();\n".to_vec();
        strip_source_map(&mut js);
        assert_eq!(js, b"a();\n");
    }

    #[test]
    fn npm_tarball_urls() {
        assert_eq!(
            tarball_url(&PACKAGES[0]),
            "https://registry.npmjs.org/@xterm/xterm/-/xterm-5.5.0.tgz"
        );
        assert_eq!(
            tarball_url(&PACKAGES[1]),
            "https://registry.npmjs.org/@xterm/addon-fit/-/addon-fit-0.10.0.tgz"
        );
    }
}
