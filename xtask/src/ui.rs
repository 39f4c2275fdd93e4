//! The dashboard build: frontend crate -> wasm32 (linked with relocations) -> the post-link split
//! into a main module and lazily loaded chunks (`wasm_split_cli_support`, for Leptos'
//! `#[lazy_route]` pages) -> wasm-bindgen on the main module (as a library, pinned to the same
//! version as the `wasm-bindgen` crate) -> files in a content-hashed directory
//! `target/ui/assets/corral-<hash>/`, plus the pinned xterm.js files (`xterm.rs`), which
//! `backend/build.rs` embeds into the binary.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm-release";
/// Leptos type-erases every component's view (`AnyView`) under this cfg: far fewer generic
/// instantiations, measured 1862 → 1663 KiB raw, 530 → 476 KiB gzip. Set for the wasm32
/// target only (host tools keep their build cache).
const RUSTFLAGS_VAR: &str = "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS";
/// `--emit-relocs` keeps the linker's relocations in the module: the split reads them to find
/// what each function refers to.
const RUSTFLAGS: &str = "--cfg erase_components -C link-args=--emit-relocs";

/// Starts the app; a failure to load is put on `<body data-app-error>` for tests and shown.
/// After it started, a trap of the module (a Rust panic: with `panic = "abort"` the app cannot
/// go on, e.g. when a page's module could not be fetched) is put there too, with a bar that
/// says so and offers a reload, instead of a page that silently stops answering.
const BOOT_JS: &str = r#"import init from "/assets/{{APP}}/corral.js";
const stopped = (err) => {
  if (!(err instanceof WebAssembly.RuntimeError) || document.body.hasAttribute("data-app-error")) return;
  document.body.setAttribute("data-app-error", String(err));
  const bar = document.createElement("div");
  bar.className = "notice bad app-stopped";
  bar.setAttribute("role", "alert");
  bar.dataset.testid = "app-stopped";
  bar.textContent = "The dashboard stopped after an error (a page that could not be loaded, or a bug; the browser's console has the details).";
  const reload = document.createElement("button");
  reload.className = "btn primary";
  reload.textContent = "Reload the page";
  reload.addEventListener("click", () => location.reload());
  bar.append(reload);
  document.body.prepend(bar);
};
// A trap in an event handler is an error; one in a callback from a promise (a page's module
// arriving) is a rejection.
window.addEventListener("error", (e) => stopped(e.error));
window.addEventListener("unhandledrejection", (e) => stopped(e.reason));
init({ module_or_path: "/assets/{{APP}}/corral_bg.wasm" }).catch((e) => {
  document.body.setAttribute("data-app-error", String(e));
  document.body.textContent = "Corral's dashboard failed to start: " + e;
  console.error("corral: the dashboard failed to start", e);
});
"#;

/// Appended to the split's loader, whose chunk fetches are rewritten to call it. A chunk whose
/// fetch fails on the network (a dropped connection; Chromium aborts requests in flight when the
/// host's addresses change) is fetched again, twice, before the page gives up: the generated
/// loader treats any failure as final. A chunk that is gone (404) means the daemon was upgraded
/// while the page was open — its build's directory no longer exists — so the page loads again
/// into the new build, at the link the user followed (the router changes the address only once
/// the page's module is there), once per build (a second 404 is an error like any other).
const FETCH_CHUNK_JS: &str = r#"
let lastLinkPath = null;
document.addEventListener("click", (e) => {
    const a = e.target instanceof Element ? e.target.closest("a[href]") : null;
    if (a && a.origin === location.origin) lastLinkPath = a.pathname + a.search + a.hash;
}, true);
async function fetchChunk(url) {
    for (let attempt = 0; ; attempt++) {
        try {
            const response = await fetch(url);
            if (response.status === 404) {
                const key = "corral-reloaded-for " + new URL(".", import.meta.url).pathname;
                if (sessionStorage.getItem(key) === null) {
                    sessionStorage.setItem(key, "1");
                    location.assign(lastLinkPath ?? location.href);
                    return new Promise(() => {});
                }
                return response;
            }
            if (response.ok || attempt >= 2) return response;
        } catch (e) {
            if (attempt >= 2) throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)));
    }
}
"#;

/// What one build produced, for size reports.
pub struct UiBuild {
    pub dir: PathBuf,
    /// The main module: what every page load downloads.
    pub wasm: PathBuf,
    pub js: PathBuf,
    /// The split's loader (`split.js`) and its chunks, fetched when a lazy page is first shown.
    pub split_js: PathBuf,
    pub chunks: Vec<PathBuf>,
    /// What a first visit downloads: the sign-in page (the main module), then each lazily
    /// loaded module with the main module and the chunks it needs. Also in [`LOADS`].
    pub loads: Vec<(String, Vec<PathBuf>)>,
}

/// [`UiBuild::loads`] as JSON, in the target directory (not in `target/ui`, which is embedded).
pub const LOADS: &str = "ui-loads.json";

pub fn build(root: &Path) -> Result<UiBuild> {
    ensure_wasm_target()?;
    println!("==> building the dashboard (wasm32)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustflags = match std::env::var(RUSTFLAGS_VAR) {
        Ok(f) if !f.trim().is_empty() => format!("{f} {RUSTFLAGS}"),
        _ => RUSTFLAGS.to_owned(),
    };
    let status = Command::new(&cargo)
        .env(RUSTFLAGS_VAR, rustflags)
        .args([
            "build",
            "-p",
            "frontend",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ])
        .status()
        .context("run cargo build for the frontend")?;
    if !status.success() {
        bail!("building the frontend failed ({status})");
    }
    let target = super::target_dir(root);
    let input = target.join(TARGET).join(PROFILE).join("frontend.wasm");
    let linked = fs::read(&input).with_context(|| format!("read {}", input.display()))?;
    let name = format!("corral-{:016x}", fnv64(&linked));

    // Fresh output dir each time, so stale hashed files never get embedded.
    let out = target.join("ui");
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("clear {}", out.display()))?;
    }
    let assets = out.join("assets");
    let app = assets.join(&name);
    fs::create_dir_all(&app)?;

    // The split: chunk modules and their loader go straight to the app's directory; the main
    // module still needs wasm-bindgen. The paths inside are relative to the importing file, so
    // every file of one build lives in one directory whose name is the hash.
    let main_split = target
        .join(TARGET)
        .join(PROFILE)
        .join("frontend_split.wasm");
    let split = wasm_split_cli_support::transform({
        let mut opts = wasm_split_cli_support::Options::new(&linked);
        opts.output_dir = &app;
        opts.main_out_path = &main_split;
        opts.link_name = "./split.js";
        opts.main_module = "./corral.js";
        opts
    })
    .map_err(|e| anyhow::anyhow!("wasm split: {e:#}"))?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&main_split)
        .out_name("corral")
        .web(true)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?
        // The library defaults to omitting it, unlike the CLI; `init()` needs it.
        .omit_default_module_path(false)
        // The chunks import the main module's functions by their linker names.
        .keep_lld_exports(true)
        .demangle(false)
        .typescript(false)
        .generate(&app)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?;

    // Hand-written static files, then index.html with the hashed names filled in.
    let static_dir = root.join("static");
    for entry in
        fs::read_dir(&static_dir).with_context(|| format!("read {}", static_dir.display()))?
    {
        let entry = entry?;
        let file = entry.file_name();
        if file == "index.html" || !entry.file_type()?.is_file() {
            continue;
        }
        fs::copy(entry.path(), out.join(&file))?;
    }
    // xterm.js for the terminal tab: pinned, integrity-checked, embedded like the rest.
    super::xterm::vendor(&target, &out)?;
    let template = fs::read_to_string(static_dir.join("index.html"))?;
    for placeholder in ["{{APP}}", "{{XTERM}}"] {
        if !template.contains(placeholder) {
            bail!("static/index.html must contain the {placeholder} placeholder");
        }
    }
    fs::write(
        out.join("index.html"),
        template
            .replace("{{APP}}", &name)
            .replace("{{XTERM}}", &super::xterm::url_dir()),
    )?;
    // The loader is a file, not an inline script, so the CSP can forbid inline scripts.
    fs::write(
        app.join("corral.boot.js"),
        BOOT_JS.replace("{{APP}}", &name),
    )?;

    let wasm = app.join("corral_bg.wasm");
    let js = app.join("corral.js");
    let split_js = app.join("split.js");
    for f in [&wasm, &js, &split_js] {
        if !f.is_file() {
            bail!("the dashboard build did not write {}", f.display());
        }
    }
    retry_chunk_fetches(&split_js)?;
    let mut chunks = split.split_modules;
    chunks.sort();
    for f in chunks.iter().chain([&wasm]) {
        let stripped = strip_custom_sections(&fs::read(f)?)?;
        fs::write(f, stripped)?;
    }
    // Split names end in a hash of where the macro was used: `overview_module_1265…`.
    let mut loads = vec![("sign-in page (main module)".to_owned(), vec![wasm.clone()])];
    let mut lazy: Vec<_> = split.prefetch_map.into_iter().collect();
    lazy.sort();
    for (split, stems) in lazy {
        let name = split
            .rsplit_once('_')
            .filter(|(_, h)| h.bytes().all(|b| b.is_ascii_digit()))
            .map_or(split.as_str(), |(n, _)| n);
        let mut files = vec![wasm.clone()];
        files.extend(stems.iter().map(|s| app.join(format!("{s}.wasm"))));
        loads.push((format!("first page of `{name}`"), files));
    }
    let json = serde_json::to_vec_pretty(&loads)?;
    fs::write(target.join(LOADS), json)?;
    let build = UiBuild {
        dir: out,
        wasm,
        js,
        split_js,
        chunks,
        loads,
    };
    build.print_sizes();
    Ok(build)
}

impl UiBuild {
    /// Prints the size tables: raw and gzip -9 of every file, then what each first visit
    /// downloads.
    pub fn print_sizes(&self) {
        let kib = |n: usize| format!("{:.1}", n as f64 / 1024.0);
        let gz = |f: &Path| fs::read(f).ok().and_then(|d| gzip9(&d).ok());
        println!("    dashboard built in {}", self.dir.display());
        println!("    | file | raw KiB | gzip -9 KiB |");
        println!("    |---|---:|---:|");
        let mut sizes = std::collections::HashMap::new();
        for f in [&self.wasm, &self.js, &self.split_js]
            .into_iter()
            .chain(&self.chunks)
        {
            let raw = fs::metadata(f).map_or(0, |m| m.len() as usize);
            let packed = gz(f);
            sizes.insert(f.clone(), packed);
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!(
                "    | {name} | {} | {} |",
                kib(raw),
                packed.map_or("?".into(), kib)
            );
        }
        println!();
        println!("    | first visit | wasm files | gzip -9 KiB, summed per file |");
        println!("    |---|---:|---:|");
        for (name, files) in &self.loads {
            let total: Option<usize> = files
                .iter()
                .map(|f| sizes.get(f).copied().unwrap_or_else(|| gz(f)))
                .sum();
            println!(
                "    | {name} | {} | {} |",
                files.len(),
                total.map_or("?".into(), kib)
            );
        }
    }
}

/// Routes every chunk fetch of the split's loader through [`FETCH_CHUNK_JS`].
fn retry_chunk_fetches(split_js: &Path) -> Result<()> {
    const FETCH: &str = "fetch(new URL(";
    let js = fs::read_to_string(split_js)?;
    if !js.contains(FETCH) {
        bail!(
            "{} has no `{FETCH}`: the split's loader changed, update retry_chunk_fetches",
            split_js.display()
        );
    }
    let js = js.replace(FETCH, "fetchChunk(new URL(") + FETCH_CHUNK_JS;
    fs::write(split_js, js)?;
    Ok(())
}

/// Size of `data` after `gzip -9` (the command, as the issue measured it; flate2 when absent).
pub fn gzip9(data: &[u8]) -> Result<usize> {
    use std::io::Write;
    if let Ok(mut child) = Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        let mut stdin = child.stdin.take().context("gzip stdin")?;
        let data = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output()?;
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("gzip writer"))??;
        if out.status.success() {
            return Ok(out.stdout.len());
        }
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data)?;
    Ok(e.finish()?.len())
}

/// Adds the wasm32 target through rustup when it is missing (a fresh machine has only the host's).
fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) =>
        {
            Ok(())
        }
        Ok(_) => {
            println!("==> rustup target add {TARGET}");
            let ok = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()?
                .success();
            if ok {
                Ok(())
            } else {
                bail!("rustup target add {TARGET} failed")
            }
        }
        // No rustup: trust that the toolchain has the target; cargo will say if not.
        Err(_) => Ok(()),
    }
}

/// Drops the custom sections (function names, producers, DWARF) that the browser never needs.
/// The profile keeps them so wasm-bindgen can read the `target_features` section; this runs after it.
fn strip_custom_sections(wasm: &[u8]) -> Result<Vec<u8>> {
    const HEADER: usize = 8;
    if wasm.len() < HEADER || &wasm[..4] != b"\0asm" {
        bail!("not a wasm module");
    }
    let mut out = wasm[..HEADER].to_vec();
    let mut at = HEADER;
    while at < wasm.len() {
        let id = wasm[at];
        let (len, leb) = read_leb_u32(&wasm[at + 1..])?;
        let end = at + 1 + leb + len as usize;
        if end > wasm.len() {
            bail!("truncated wasm section at byte {at}");
        }
        if id != 0 {
            out.extend_from_slice(&wasm[at..end]);
        }
        at = end;
    }
    Ok(out)
}

/// Reads an unsigned LEB128 u32; returns the value and how many bytes it took.
fn read_leb_u32(bytes: &[u8]) -> Result<(u32, usize)> {
    let mut value = 0u32;
    for (i, b) in bytes.iter().take(5).enumerate() {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    bail!("bad LEB128 in wasm section header")
}

/// FNV-1a, 64 bit: a stable content hash for cache-busting file names.
fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
