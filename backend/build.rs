//! Embeds the dashboard into the binary.
//!
//! `cargo xtask` writes the built dashboard (index.html, hashed JS/WASM, static files) to
//! `target/ui` (or `$CORRAL_UI_DIR`). Every file there becomes an entry of `ASSETS`. When the
//! directory is absent (a plain `cargo build`), a one-page notice is embedded instead, so the
//! daemon still builds and serves its API.

use std::{env, fmt::Write as _, fs, path::Path, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=CORRAL_UI_DIR");
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let ui = match env::var_os("CORRAL_UI_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // Watching a path that does not exist reruns this script on every build: make sure
            // the default directory exists (empty until `cargo xtask ui` fills it).
            let dir = manifest.join("../target/ui");
            let _ = fs::create_dir_all(&dir);
            dir
        }
    };
    println!("cargo:rerun-if-changed={}", ui.display());

    let mut files = Vec::new();
    if ui.join("index.html").is_file() {
        collect(&ui, &ui, &mut files);
    }
    files.sort();

    let mut out =
        String::from("/// Files of the dashboard: (URL path, bytes, content type, immutable).\n");
    out.push_str("pub static ASSETS: &[(&str, &[u8], &str, bool)] = &[\n");
    for rel in &files {
        let abs = ui.join(rel);
        let url = format!("/{}", rel.replace('\\', "/"));
        // Hashed names (`corral-<16 hex>...`) never change content: cache them for a year.
        let immutable = rel.contains("corral-") && rel.starts_with("assets/");
        writeln!(
            out,
            "    ({url:?}, include_bytes!({:?}), {:?}, {immutable}),",
            abs.display().to_string(),
            content_type(rel)
        )
        .expect("write to String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    fs::write(dest, out).expect("write assets.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read ui dir") {
        let path = entry.expect("read ui dir entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            files.push(rel);
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
