//! The kernel test suite inside a pure cgroup-v2 kernel: Debian's stock kernel booted under
//! `qemu-system-x86_64 -accel tcg` from an initramfs that this module assembles.
//!
//! Flow of [`run_kernel_suite`]:
//! 1. make sure the host has what it needs (Debian packages, installed with apt-get when missing);
//! 2. pick the newest `/boot/vmlinuz-KVER` that has `/lib/modules/KVER`;
//! 3. write a newc cpio (uncompressed: the kernel unpacks it faster than it would gunzip it under
//!    TCG) holding busybox and its applet links, the test binaries with their shared libraries, the
//!    kernel modules the container tests need (decompressed on the host) and a generated init;
//! 4. boot it, stream the serial console to the terminal and to `target/vm/kernel-suite.log`, and
//!    parse the result marker the init prints after the test binary exits.
//!
//! The init copies the root into a tmpfs and `switch_root`s into it (an initramfs root cannot be
//! pivot_root'ed away from, and the container tests need pivot_root), mounts cgroup2 alone
//! (`cgroup_no_v1=all`), enables every controller in the root's `cgroup.subtree_control`, loads the
//! modules, brings `lo` up, runs the test binary, prints `CORRAL-VM-RESULT-<nonce> rc=N` and powers
//! off.
//!
//! Nothing is left behind but the log: the initramfs is deleted once qemu has loaded it, and qemu
//! is killed on every exit path (a drop guard; `setpriv --pdeathsig KILL` when xtask itself is
//! killed; Ctrl-C reaches qemu through the shared process group).

use std::{
    cmp::Ordering,
    collections::BTreeSet,
    ffi::OsStr,
    fs::{self, File},
    io::{self, BufWriter, Read, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

/// Debian packages the runner needs, with a file that proves each one is there.
/// (The initramfs is written in Rust, so the `cpio` tool is not needed.)
const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("linux-image-amd64", "/boot"),
    ("busybox-static", "busybox"),
    ("kmod", "modprobe"),
    // To boot the kernel uncompressed (twice as fast under TCG); tiny.
    ("xz-utils", "xz"),
];

/// Kernel modules the container tests need that Debian builds as modules. Missing ones are
/// reported, not fatal.
pub const DEFAULT_MODULES: &[&str] = &[
    "overlay",
    "veth",
    "bridge",
    "nf_tables",
    "nf_nat",
    "nf_conntrack",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "loop",
    // The bridge filter's `iifname`/`oifname` in the bridge family (network::l2).
    "nft_meta_bridge",
    // criu finds a checkpointed tree's sockets through sock_diag (kernel::checkpoint); a host
    // with modprobe loads these on demand, the VM's init cannot.
    "unix_diag",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "raw_diag",
    "af_packet_diag",
    "netlink_diag",
    // ... and the network namespace's conntrack entries through ctnetlink.
    "nf_conntrack_netlink",
];

/// Where the carried binaries live inside the VM.
const GUEST_BIN_DIR: &str = "/usr/local/bin";

/// Options for one run of the kernel suite in the VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The integration-test binary (`it`); runs as `/usr/local/bin/it` in the VM.
    pub test_binary: PathBuf,
    /// Arguments for the test binary (default `kernel:: --test-threads=1`).
    pub test_args: Vec<String>,
    /// The `corral` binary; `$CORRAL_BIN` points at it in the VM.
    pub corral_bin: Option<PathBuf>,
    /// The `testload` workload binary; `$CORRAL_TESTLOAD` points at it in the VM.
    pub testload_bin: Option<PathBuf>,
    /// More files to carry: (host path, absolute guest path). Executables get their libraries.
    pub extra_files: Vec<(PathBuf, String)>,
    /// More environment for the test binary (on top of CORRAL_IN_VM, CORRAL_BIN, ...).
    pub env: Vec<(String, String)>,
    /// Guest memory in MiB (default 2048).
    pub memory_mib: u32,
    /// Guest CPUs (default 2).
    pub cpus: u32,
    /// Wall-clock limit for the whole run, boot included (default 30 min, or
    /// `$CORRAL_VM_TIMEOUT_SECS`). TCG is slow: be generous.
    pub timeout: Duration,
    /// Kernel modules to carry and insmod, each with its dependencies.
    pub modules: Vec<String>,
    /// The kernel image; default: the newest `/boot/vmlinuz-*` that has `/lib/modules/KVER`.
    pub kernel: Option<PathBuf>,
    /// Boot an uncompressed copy of the kernel (cached as `work_dir/vmlinux-KVER`) through its
    /// PVH entry point when the kernel has one: skips the decompressor, which TCG runs slowly
    /// (boots about twice as fast here). Default true; falls back to the bzImage.
    pub uncompressed_kernel: bool,
    /// Directory for the log (and, while qemu loads it, the initramfs). Usually `target/vm`.
    pub work_dir: PathBuf,
    /// Install missing Debian packages with apt-get (needs root).
    pub install_missing: bool,
    /// Keep `initramfs.cpio` in `work_dir` after the run (for debugging).
    pub keep_initramfs: bool,
    /// Echo the serial console to stdout while it runs (CI shows the test output).
    pub echo: bool,
}

impl VmOptions {
    /// Defaults around the test binary; the log goes to `work_dir` (e.g. `target/vm`).
    pub fn new(test_binary: impl Into<PathBuf>, work_dir: impl Into<PathBuf>) -> Self {
        let timeout_secs = std::env::var("CORRAL_VM_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(30 * 60);
        VmOptions {
            test_binary: test_binary.into(),
            test_args: vec!["kernel::".into(), "--test-threads=1".into()],
            corral_bin: None,
            testload_bin: None,
            extra_files: Vec::new(),
            env: Vec::new(),
            memory_mib: 2048,
            cpus: 2,
            timeout: Duration::from_secs(timeout_secs),
            modules: DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
            kernel: None,
            uncompressed_kernel: true,
            work_dir: work_dir.into(),
            install_missing: true,
            keep_initramfs: false,
            echo: true,
        }
    }

    /// Defaults for binaries found by [`build_test_binaries`]; the log goes to `<target>/vm`.
    pub fn from_binaries(bins: &TestBinaries) -> Self {
        let mut o = VmOptions::new(&bins.it, bins.target_dir.join("vm"));
        o.corral_bin = Some(bins.corral.clone());
        o.testload_bin = bins.testload.clone();
        o
    }
}

/// What a finished run measured.
#[derive(Debug, Clone)]
pub struct VmReport {
    /// Exit status of the test binary in the VM (0 when `run_kernel_suite` returns Ok).
    pub exit_code: i32,
    /// The kernel that was booted (KVER).
    pub kernel_version: String,
    /// qemu start → the init's first line (kernel boot + initramfs unpack).
    pub kernel_boot: Duration,
    /// qemu start → the test binary starts (root copied, cgroup2 and modules set up).
    pub boot: Duration,
    /// Test binary start → its exit.
    pub suite: Duration,
    /// qemu start → qemu exit.
    pub total: Duration,
    /// libtest's last `test result:` line.
    pub summary: Option<String>,
    /// Modules that could not be carried (not built for this kernel) or loaded in the VM.
    pub missing_modules: Vec<String>,
    /// The serial console log.
    pub log: PathBuf,
}

impl std::fmt::Display for VmReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kernel {}: rc={} boot {:.1}s (kernel {:.1}s), suite {:.1}s, total {:.1}s",
            self.kernel_version,
            self.exit_code,
            self.boot.as_secs_f64(),
            self.kernel_boot.as_secs_f64(),
            self.suite.as_secs_f64(),
            self.total.as_secs_f64(),
        )?;
        if let Some(s) = &self.summary {
            write!(f, "; {s}")?;
        }
        if !self.missing_modules.is_empty() {
            write!(f, "; missing modules: {}", self.missing_modules.join(" "))?;
        }
        write!(f, "; log {}", self.log.display())
    }
}

/// Boots the VM, runs the test binary in it and returns what was measured.
///
/// Returns Ok only if the test binary exited 0. Every other outcome is an error that says what
/// happened (test failures with their names, timeout, kernel panic, no result marker) and where
/// the log is.
pub fn run_kernel_suite(opts: &VmOptions) -> Result<VmReport> {
    if opts.install_missing {
        ensure_host_packages()?;
    }
    let (kernel, kver) = match &opts.kernel {
        Some(k) => {
            let kver = k
                .file_name()
                .and_then(OsStr::to_str)
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .with_context(|| format!("kernel {} is not named vmlinuz-KVER", k.display()))?;
            (k.clone(), kver.to_string())
        }
        None => newest_kernel(Path::new("/boot"), Path::new("/lib/modules"))?,
    };
    fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let nonce = nonce();
    let initramfs = opts.work_dir.join("initramfs.cpio");
    let initramfs_guard = RemoveOnDrop(if opts.keep_initramfs {
        None
    } else {
        Some(initramfs.clone())
    });
    let t = Instant::now();
    let host_missing = build_initramfs(opts, &kver, &nonce, &initramfs)?;
    // An uncompressed vmlinux boots through PVH and skips the decompressor, which TCG runs slowly.
    let kernel = if opts.uncompressed_kernel {
        uncompressed_kernel(&kernel, &kver, &opts.work_dir).unwrap_or(kernel)
    } else {
        kernel
    };
    let size = fs::metadata(&initramfs).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "vm: initramfs {} ({:.1} MiB) in {:.1}s; booting {} ({} MiB, {} CPUs, TCG, timeout {}s)",
        initramfs.display(),
        size as f64 / (1024.0 * 1024.0),
        t.elapsed().as_secs_f64(),
        kernel.display(),
        opts.memory_mib,
        opts.cpus,
        opts.timeout.as_secs(),
    );
    let log = opts.work_dir.join("kernel-suite.log");
    let mut run = boot(opts, &kernel, &initramfs, &log, &nonce, initramfs_guard)?;
    run.report.kernel_version = kver;
    let mut missing = host_missing;
    missing.append(&mut run.guest_missing);
    run.report.missing_modules = missing;
    run.outcome(opts)
}

/// Paths of the binaries `cargo` built for the suite.
#[derive(Debug, Clone)]
pub struct TestBinaries {
    pub it: PathBuf,
    pub corral: PathBuf,
    pub testload: Option<PathBuf>,
    pub target_dir: PathBuf,
}

/// Builds `corral` (`cargo build -p backend --features fault-injection`) and the `it` test binary (plus the tests crate's
/// binaries such as `testload`) with `cargo test -p tests --no-run`, and returns their paths.
pub fn build_test_binaries() -> Result<TestBinaries> {
    let corral = cargo_executables(&["build", "-p", "backend", "--features", "fault-injection"])?
        .into_iter()
        .find(|(name, is_test, _)| name == "corral" && !is_test)
        .map(|(_, _, p)| p)
        .context("cargo build -p backend produced no `corral` executable")?;
    let built = cargo_executables(&["test", "-p", "tests", "--no-run"])?;
    let it = built
        .iter()
        .find(|(name, is_test, _)| name == "it" && *is_test)
        .map(|(_, _, p)| p.clone())
        .context("cargo test -p tests --no-run produced no `it` test binary")?;
    let testload = built
        .iter()
        .find(|(name, is_test, _)| name == "testload" && !is_test)
        .map(|(_, _, p)| p.clone());
    let target_dir = target_dir()?;
    Ok(TestBinaries {
        it,
        corral,
        testload,
        target_dir,
    })
}

/// `cargo xtask vm [--timeout SECS] [--mem MIB] [--cpus N] [--kernel VMLINUZ] [--bzimage]
/// [--keep] [-- TEST-ARGS]`: builds the binaries and runs the kernel suite (or the given test
/// filter) in the VM.
pub fn cli(args: &[String]) -> Result<()> {
    let mut it = args.iter();
    let mut timeout = None;
    let mut mem = None;
    let mut cpus = None;
    let mut keep = false;
    let mut bzimage = false;
    let mut kernel = None;
    let mut test_args: Option<Vec<String>> = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--timeout" => timeout = Some(number(it.next(), "--timeout")?),
            "--mem" => mem = Some(number(it.next(), "--mem")?),
            "--cpus" => cpus = Some(number(it.next(), "--cpus")?),
            "--keep" => keep = true,
            "--bzimage" => bzimage = true,
            "--kernel" => {
                kernel = Some(PathBuf::from(
                    it.next()
                        .context("--kernel needs a /boot/vmlinuz-KVER path")?,
                ));
            }
            "--" => {
                test_args = Some(it.by_ref().cloned().collect());
            }
            "-h" | "--help" => {
                println!(
                    "cargo xtask vm [--timeout SECS] [--mem MIB] [--cpus N] [--kernel VMLINUZ] [--bzimage]\n\
                     \x20              [--keep] [-- TEST-ARGS]\n\
                     Boots Debian's kernel under qemu (TCG, pure cgroup v2) and runs the `it` test\n\
                     binary there (default args: kernel:: --test-threads=1). Log: target/vm/kernel-suite.log"
                );
                return Ok(());
            }
            other => bail!("unknown option {other:?} for `cargo xtask vm` (try --help)"),
        }
    }
    let bins = build_test_binaries()?;
    let mut opts = VmOptions::from_binaries(&bins);
    if let Some(t) = timeout {
        opts.timeout = Duration::from_secs(t);
    }
    if let Some(m) = mem {
        opts.memory_mib = u32::try_from(m).context("--mem is too large")?;
    }
    if let Some(c) = cpus {
        opts.cpus = u32::try_from(c).context("--cpus is too large")?;
    }
    if let Some(a) = test_args {
        opts.test_args = a;
    }
    opts.keep_initramfs = keep;
    opts.kernel = kernel;
    opts.uncompressed_kernel = !bzimage;
    let report = run_kernel_suite(&opts)?;
    eprintln!("vm: PASSED: {report}");
    Ok(())
}

fn number(v: Option<&String>, flag: &str) -> Result<u64> {
    v.with_context(|| format!("{flag} needs a number"))?
        .parse()
        .with_context(|| format!("{flag} needs a number"))
}

// ---------------------------------------------------------------------------------------------
// Host preparation

fn ensure_host_packages() -> Result<()> {
    if which("dpkg-query").is_none() {
        // Not Debian: rely on the tool checks below and say what is missing.
        let missing: Vec<_> = HOST_PACKAGES
            .iter()
            .filter(|(_, probe)| !probe_present(probe))
            .map(|(pkg, probe)| format!("{probe} (Debian: {pkg})"))
            .collect();
        if !missing.is_empty() {
            bail!("the VM runner needs: {}", missing.join(", "));
        }
        return Ok(());
    }
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .filter(|(pkg, _)| !dpkg_installed(pkg))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("vm: installing {}", missing.join(" "));
    if !is_root() {
        bail!(
            "the VM runner needs {}: run `apt-get update && apt-get install -y {}` as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

fn probe_present(probe: &str) -> bool {
    if probe.starts_with('/') {
        Path::new(probe).exists()
    } else {
        which(probe).is_some()
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Finds an executable on PATH (and in the sbin dirs, which a non-login root shell may lack).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8"))
}

/// The newest `vmlinuz-KVER` in `boot` whose `modules/KVER/modules.dep` exists.
fn newest_kernel(boot: &Path, modules: &Path) -> Result<(PathBuf, String)> {
    let mut found: Vec<String> = fs::read_dir(boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .filter(|kver| modules.join(kver).join("modules.dep").is_file())
        .collect();
    found.sort_by(|a, b| version_cmp(a, b));
    let kver = found.pop().with_context(|| {
        format!(
            "no {}/vmlinuz-KVER with {}/KVER/modules.dep: install linux-image-amd64",
            boot.display(),
            modules.display()
        )
    })?;
    Ok((boot.join(format!("vmlinuz-{kver}")), kver))
}

/// The kernel image without its compression (vmlinux, an ELF with a PVH note), extracted from
/// the bzImage once and cached in `work_dir`; None (with a note) when that is not possible.
fn uncompressed_kernel(bz: &Path, kver: &str, work_dir: &Path) -> Option<PathBuf> {
    let config = bz.with_file_name(format!("config-{kver}"));
    let pvh = fs::read_to_string(&config).is_ok_and(|c| c.lines().any(|l| l == "CONFIG_PVH=y"));
    if !pvh {
        return None;
    }
    let cache = work_dir.join(format!("vmlinux-{kver}"));
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(c), Some(b)) = (mtime(&cache), mtime(bz))
        && c >= b
    {
        return Some(cache);
    }
    match extract_vmlinux(bz) {
        Ok(elf) => {
            let tmp = work_dir.join(format!(".vmlinux-{kver}.{}", std::process::id()));
            let written = fs::write(&tmp, &elf).and_then(|()| fs::rename(&tmp, &cache));
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                eprintln!(
                    "vm: cannot cache {}: {e}; booting the bzImage",
                    cache.display()
                );
                return None;
            }
            Some(cache)
        }
        Err(e) => {
            eprintln!("vm: booting the bzImage: {e:#}");
            None
        }
    }
}

/// Finds the compressed payload in a bzImage and decompresses it with the host's tool (what the
/// kernel's scripts/extract-vmlinux does).
fn extract_vmlinux(bz: &Path) -> Result<Vec<u8>> {
    let data = fs::read(bz).with_context(|| format!("reading {}", bz.display()))?;
    let formats: [(&[u8], &str, &[&str]); 3] = [
        (b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]),
        (b"\x28\xb5\x2f\xfd", "zstd", &["-dcq"]),
        (b"\x1f\x8b\x08\x00", "gzip", &["-dcq"]),
    ];
    for (magic, tool, args) in formats {
        if which(tool).is_none() {
            continue;
        }
        let starts = data
            .windows(magic.len())
            .enumerate()
            .filter(|(_, w)| w == &magic)
            .map(|(i, _)| i)
            .take(4);
        for start in starts {
            let Ok(mut child) = Command::new(tool)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            else {
                break;
            };
            let Some(mut stdin) = child.stdin.take() else {
                continue;
            };
            let payload = data[start..].to_vec();
            // Trailing bytes after the stream make some tools complain: the output still counts.
            let feeder = thread::spawn(move || {
                let _ = stdin.write_all(&payload);
            });
            let out = child.wait_with_output();
            let _ = feeder.join();
            if let Ok(out) = out
                && out.stdout.starts_with(b"\x7fELF")
            {
                return Ok(out.stdout);
            }
        }
    }
    bail!(
        "found no xz/zstd/gzip payload in {} that decompresses to ELF",
        bz.display()
    )
}

/// Natural order: runs of digits compare as numbers ("6.1.0-10" > "6.1.0-9").
fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

fn target_dir() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = output(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(workspace_root()),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing cargo metadata")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs a cargo build command with `--message-format=json` and returns (target name, is a test
/// harness, executable) for every executable it produced.
fn cargo_executables(args: &[&str]) -> Result<Vec<(String, bool, PathBuf)>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = output(
        Command::new(cargo)
            .args(args)
            .arg("--message-format=json-render-diagnostics")
            .current_dir(workspace_root()),
    )?;
    let mut exes = Vec::new();
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(exe), Some(name)) = (v["executable"].as_str(), v["target"]["name"].as_str())
        else {
            continue;
        };
        let is_test = v["profile"]["test"].as_bool().unwrap_or(false);
        exes.push((name.to_string(), is_test, PathBuf::from(exe)));
    }
    Ok(exes)
}

// ---------------------------------------------------------------------------------------------
// The initramfs

/// Writes the initramfs; returns the modules that do not exist for `kver`.
fn build_initramfs(opts: &VmOptions, kver: &str, nonce: &str, dest: &Path) -> Result<Vec<String>> {
    let file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut cpio = Cpio::new(BufWriter::with_capacity(1 << 20, file));

    for d in [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/run",
        "/root",
        "/var",
        "/newroot",
        "/mnt",
    ] {
        cpio.dir(d)?;
    }
    cpio.dev_char("/dev/console", 5, 1, 0o600)?;
    cpio.dev_char("/dev/null", 1, 3, 0o666)?;

    // busybox and its applets.
    let busybox = find_busybox()?;
    cpio.file_from("/bin/busybox", &busybox, 0o755)?;
    carry_libraries(&mut cpio, &busybox)?;
    let applets = output(Command::new(&busybox).arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = format!("/{applet}");
        if path != "/bin/busybox" {
            cpio.symlink(&path, "/bin/busybox")?;
        }
    }

    // nft (and its libraries), so the network tests install and check NAT in the VM too.
    match which("nft") {
        Some(nft) => carry_binary(&mut cpio, &nft, "/usr/sbin/nft")?,
        None => eprintln!("vm: nft not found (apt install nftables): NAT is not tested in the VM"),
    }

    // The docker CLI, so the Docker Engine API is driven by the real client in the VM too.
    match which("docker") {
        Some(docker) => carry_binary(&mut cpio, &docker, "/usr/bin/docker")?,
        None => eprintln!("vm: docker not found (apt install docker.io): kernel::docker_api fails"),
    }

    // criu (and its libraries), so containers are checkpointed and restored for real where
    // Debian's criu works with the kernel (kernel::checkpoint).
    match which("criu") {
        Some(criu) => carry_binary(&mut cpio, &criu, "/usr/sbin/criu")?,
        None => eprintln!("vm: criu not found (apt install criu): kernel::checkpoint fails"),
    }
    // GNU tar: criu dumps a container's tmpfs mounts with it (busybox tar lacks its options).
    // Later in the archive than busybox's applet links, so it replaces a `usr/bin/tar` one.
    match which("tar") {
        Some(tar) if fs::canonicalize(&tar).is_ok_and(|p| !p.ends_with("busybox")) => {
            carry_binary(&mut cpio, &tar, "/usr/bin/tar")?;
        }
        _ => eprintln!("vm: GNU tar not found: criu cannot dump tmpfs contents"),
    }

    // The binaries, under /usr/local/bin and (as links) at their host paths, so a path compiled
    // in with env!("CARGO_BIN_EXE_..") resolves too.
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!("{GUEST_BIN_DIR}:/usr/sbin:/usr/bin:/sbin:/bin"),
        ),
        ("HOME".into(), "/root".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("CORRAL_IN_VM".into(), "1".into()),
        ("RUST_BACKTRACE".into(), "1".into()),
    ];
    let test_guest = format!("{GUEST_BIN_DIR}/it");
    carry_binary(&mut cpio, &opts.test_binary, &test_guest)?;
    for (host, name, var) in [
        (&opts.corral_bin, "corral", "CORRAL_BIN"),
        (&opts.testload_bin, "testload", "CORRAL_TESTLOAD"),
    ] {
        if let Some(host) = host {
            let guest = format!("{GUEST_BIN_DIR}/{name}");
            carry_binary(&mut cpio, host, &guest)?;
            env.push((var.into(), guest));
        }
    }
    for (host, guest) in &opts.extra_files {
        if !guest.starts_with('/') {
            bail!(
                "guest path {guest:?} for {} is not absolute",
                host.display()
            );
        }
        carry_binary(&mut cpio, host, guest)?;
    }
    env.extend(opts.env.iter().cloned());

    // Kernel modules, each with its dependencies, in load order, decompressed.
    let (module_files, missing) = resolve_modules(kver, &opts.modules)?;
    if !missing.is_empty() {
        eprintln!(
            "vm: modules not built for {kver}, not carried: {}",
            missing.join(" ")
        );
    }
    let mut insmods = Vec::new();
    for (host, params) in &module_files {
        let guest = guest_module_path(host);
        let data = read_module(host)?;
        cpio.file_bytes(&guest, &data, 0o644)?;
        insmods.push((guest, params.clone()));
    }

    // /etc basics.
    cpio.file_bytes(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    cpio.file_bytes("/etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    cpio.file_bytes("/etc/hostname", b"corral-vm\n", 0o644)?;
    cpio.file_bytes(
        "/etc/hosts",
        b"127.0.0.1 localhost corral-vm\n::1 localhost ip6-localhost\n",
        0o644,
    )?;
    cpio.file_bytes(
        "/etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nhosts: files\n",
        0o644,
    )?;

    // The init, in two stages.
    cpio.file_bytes("/init", stage1_script(&insmods).as_bytes(), 0o755)?;
    let stage2 = stage2_script(&env, &test_guest, &opts.test_args, nonce);
    cpio.file_bytes("/init2", stage2.as_bytes(), 0o755)?;

    cpio.finish()
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(missing)
}

fn find_busybox() -> Result<PathBuf> {
    let bb = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| which("busybox"))
        .context("busybox not found: install busybox-static")?;
    let list = output(Command::new(&bb).arg("--list"))?;
    let have: BTreeSet<&str> = list.lines().collect();
    let need = [
        "sh",
        "mount",
        "umount",
        "cp",
        "switch_root",
        "insmod",
        "ip",
        "hostname",
        "poweroff",
        "cat",
        "mkdir",
        "ln",
    ];
    let lacking: Vec<_> = need.iter().filter(|a| !have.contains(*a)).collect();
    if !lacking.is_empty() {
        bail!(
            "{} lacks the applets {lacking:?}: install busybox-static",
            bb.display()
        );
    }
    Ok(bb)
}

/// Copies a file into the archive; if it is a dynamic executable, its libraries and the loader
/// too.
fn carry_binary<W: Write>(cpio: &mut Cpio<W>, host: &Path, guest: &str) -> Result<()> {
    let mode = fs::metadata(host)
        .with_context(|| format!("reading {}", host.display()))?
        .permissions()
        .mode()
        & 0o7777;
    cpio.file_from(guest, host, mode)?;
    if mode & 0o111 != 0 {
        carry_libraries(cpio, host)?;
        // Also at its host path, for paths compiled into the test binary.
        if let Some(hp) = host.to_str()
            && hp.starts_with('/')
            && hp != guest
            && !cpio.has(hp)
        {
            cpio.symlink(hp, guest)?;
        }
    }
    Ok(())
}

/// Adds what `ldd` lists for `exe` (libraries at the paths ldd prints, the loader included).
fn carry_libraries<W: Write>(cpio: &mut Cpio<W>, exe: &Path) -> Result<()> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .with_context(|| format!("running ldd {}", exe.display()))?;
    // "not a dynamic executable" (static) exits 1: nothing to carry.
    let text = String::from_utf8_lossy(&out.stdout);
    for lib in ldd_paths(&text) {
        if !cpio.has(&lib) {
            let real = fs::canonicalize(&lib).with_context(|| format!("resolving {lib}"))?;
            cpio.file_from(&lib, &real, 0o755)?;
        }
    }
    if text.contains("not found") {
        bail!("ldd {} reports missing libraries:\n{text}", exe.display());
    }
    Ok(())
}

/// The absolute library paths in ldd's output (vdso skipped).
fn ldd_paths(text: &str) -> Vec<String> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(p.to_string());
        }
    }
    libs
}

/// (module file, insmod parameters) in load order, deduplicated; and the modules not found.
type ModuleFiles = Vec<(PathBuf, Vec<String>)>;

fn resolve_modules(kver: &str, names: &[String]) -> Result<(ModuleFiles, Vec<String>)> {
    let modprobe = which("modprobe").context("modprobe not found: install kmod")?;
    let mut files: ModuleFiles = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let out = Command::new(&modprobe)
            .args(["--show-depends", "-S", kver, name])
            .output()
            .with_context(|| format!("running modprobe --show-depends -S {kver} {name}"))?;
        if !out.status.success() {
            missing.push(name.clone());
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "insmod /lib/modules/KVER/kernel/...ko[.xz] [params]" or "builtin NAME".
            let mut words = line.split_whitespace();
            if words.next() != Some("insmod") {
                continue;
            }
            let Some(path) = words.next() else { continue };
            let path = PathBuf::from(path);
            if files.iter().any(|(p, _)| *p == path) {
                continue;
            }
            files.push((path, words.map(str::to_string).collect()));
        }
    }
    Ok((files, missing))
}

/// The module's path in the guest: under `/.modules` (stage 1 loads them and does not copy them
/// into the tmpfs root), without the compression suffix.
fn guest_module_path(host: &Path) -> String {
    let s = host.to_string_lossy();
    let s = s.trim_start_matches('/');
    for ext in [".xz", ".zst", ".gz"] {
        if let Some(stripped) = s.strip_suffix(ext) {
            return format!("/.modules/{stripped}");
        }
    }
    format!("/.modules/{s}")
}

/// Reads a module, decompressing .ko.xz/.ko.zst/.ko.gz with the host's tool (busybox insmod
/// cannot load compressed modules).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(OsStr::to_str) {
        Some("xz") => Some(("xz", "xz-utils")),
        Some("zst") => Some(("zstd", "zstd")),
        Some("gz") => Some(("gzip", "gzip")),
        _ => None,
    };
    let Some((tool, pkg)) = tool else {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    if which(tool).is_none() {
        bail!(
            "{} is compressed and `{tool}` is missing: install {pkg}",
            path.display()
        );
    }
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running {tool} -dc {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Quotes a string for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Stage 1 (PID 1 on the initramfs): copy the root into a tmpfs and switch_root into it, loading
/// the kernel modules meanwhile (from `/.modules`, which the copy skips).
fn stage1_script(insmods: &[(String, Vec<String>)]) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
read up _ < /proc/uptime
echo
echo "corral-vm: init at ${up}s (kernel uptime)"
mount -t tmpfs -o mode=0755 tmpfs /newroot || { echo "corral-vm: cannot mount tmpfs"; poweroff -f; }
(
missing=""
"#,
    );
    for (path, params) in insmods {
        let name = Path::new(path)
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".ko"))
            .unwrap_or(path);
        let params: Vec<String> = params.iter().map(|p| sh_quote(p)).collect();
        s.push_str(&format!(
            "insmod {} {} 2>/dev/null || missing=\"$missing {}\"\n",
            sh_quote(path),
            params.join(" "),
            name
        ));
    }
    s.push_str(
        r#"echo "$missing" > /newroot/.modules-missing
read up _ < /proc/uptime
echo "corral-vm: modules loaded at ${up}s"
) &
for e in /*; do
  case "$e" in /newroot|/proc|/sys|/dev) ;; *) cp -a "$e" /newroot/ ;; esac
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev
read up _ < /proc/uptime
echo "corral-vm: root copied to a tmpfs at ${up}s"
wait
umount /proc
exec switch_root /newroot /init2
"#,
    );
    s
}

/// Stage 2 (PID 1 on the tmpfs): mounts, cgroup2 with every controller, lo, run the tests.
fn stage2_script(
    env: &[(String, String)],
    test_bin: &str,
    test_args: &[String],
    nonce: &str,
) -> String {
    let mut s = format!(
        r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
read up _ < /proc/uptime
echo "corral-vm: switched root at ${{up}}s"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup 2>/dev/null \
  || mount -t cgroup2 cgroup2 /sys/fs/cgroup \
  || echo "corral-vm: cannot mount cgroup2 at /sys/fs/cgroup"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "corral-vm: cannot enable controller $c"
done
missing=$(cat /.modules-missing 2>/dev/null)
rm -f /.modules-missing
[ -n "$missing" ] && echo "corral-vm: insmod failed:$missing"
echo "CORRAL-VM-MISSING-{nonce}$missing"
ip link set lo up
hostname corral-vm
read up _ < /proc/uptime
echo "corral-vm: cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "CORRAL-VM-BOOTED-{nonce} uptime=$up"
"#
    );
    for (k, v) in env {
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    let args: Vec<String> = test_args.iter().map(|a| sh_quote(a)).collect();
    s.push_str(&format!(
        r#"echo "corral-vm: env: $(env | grep '^CORRAL_' | tr '\n' ' ')"
echo corral-vm: running {cmd}
cd /tmp
{cmd}
rc=$?
read up _ < /proc/uptime
echo
echo "CORRAL-VM-RESULT-{nonce} rc=$rc uptime=$up"
poweroff -f
"#,
        cmd = format!("{} {}", sh_quote(test_bin), args.join(" ")),
    ));
    s
}

/// A newc ("070701") cpio archive writer.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: BTreeSet<String>,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Cpio {
            out,
            ino: 1,
            written: BTreeSet::new(),
        }
    }

    fn has(&self, path: &str) -> bool {
        self.written.contains(path.trim_start_matches('/'))
    }

    /// Adds the parent directories of `path` that are not in the archive yet.
    fn parents(&mut self, path: &str) -> Result<()> {
        let rel = path.trim_start_matches('/');
        let mut acc = String::new();
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            if !self.written.contains(&acc) {
                let a = acc.clone();
                self.entry(&a, 0o040_755, 2, 0, &mut io::empty())?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        self.parents(path)?;
        let rel = path.trim_start_matches('/').to_string();
        if !self.written.contains(&rel) {
            self.entry(&rel, 0o040_755, 2, 0, &mut io::empty())?;
        }
        Ok(())
    }

    fn dev_char(&mut self, path: &str, major: u32, minor: u32, perm: u32) -> Result<()> {
        self.parents(path)?;
        let rel = path.trim_start_matches('/').to_string();
        self.header(&rel, 0o020_000 | perm, 1, 0, (major, minor))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.parents(path)?;
        let rel = path.trim_start_matches('/').to_string();
        if self.written.contains(&rel) {
            return Ok(());
        }
        let t = target.as_bytes();
        self.entry(&rel, 0o120_777, 1, t.len() as u64, &mut &t[..])
    }

    fn file_bytes(&mut self, path: &str, data: &[u8], perm: u32) -> Result<()> {
        self.parents(path)?;
        let rel = path.trim_start_matches('/').to_string();
        self.entry(&rel, 0o100_000 | perm, 1, data.len() as u64, &mut &data[..])
    }

    fn file_from(&mut self, path: &str, host: &Path, perm: u32) -> Result<()> {
        self.parents(path)?;
        let rel = path.trim_start_matches('/').to_string();
        let mut f = File::open(host).with_context(|| format!("opening {}", host.display()))?;
        let len = f
            .metadata()
            .with_context(|| format!("reading {}", host.display()))?
            .len();
        self.entry(&rel, 0o100_000 | perm, 1, len, &mut f)
            .with_context(|| format!("archiving {} as /{rel}", host.display()))
    }

    fn entry(
        &mut self,
        rel: &str,
        mode: u32,
        nlink: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let size32 = u32::try_from(size).with_context(|| format!("/{rel} is over 4 GiB"))?;
        self.header(rel, mode, nlink, size32, (0, 0))?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            bail!("/{rel} changed size while archiving ({copied} of {size} bytes)");
        }
        self.pad(size as usize)?;
        Ok(())
    }

    fn header(
        &mut self,
        rel: &str,
        mode: u32,
        nlink: u32,
        size: u32,
        (rmaj, rmin): (u32, u32),
    ) -> Result<()> {
        let name_len = rel.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rmaj,
            rmin,
            name_len as u32,
            0,
        ];
        self.ino += 1;
        let mut h = String::with_capacity(110 + name_len);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(rel.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(110 + name_len)?;
        if rel != "TRAILER!!!" {
            self.written.insert(rel.to_string());
        }
        Ok(())
    }

    fn pad(&mut self, len: usize) -> Result<()> {
        let n = (4 - len % 4) % 4;
        self.out.write_all(&[0u8; 3][..n])?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.out.flush()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Booting and watching the serial console

enum Event {
    Line(String, Instant),
    Eof,
}

/// Kills and reaps qemu on every exit path.
struct QemuGuard(Child);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Removes a file on drop (the initramfs: qemu reads it once at start).
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn remove_now(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        self.remove_now();
    }
}

struct Run {
    report: VmReport,
    guest_missing: Vec<String>,
    result: Option<i32>,
    panic: Option<String>,
    timed_out: bool,
    qemu_status: Option<ExitStatus>,
    tail: Vec<String>,
    failed_tests: Vec<String>,
}

impl Run {
    fn outcome(self, opts: &VmOptions) -> Result<VmReport> {
        let log = self.report.log.display().to_string();
        let tail = self.tail.join("\n");
        if let Some(p) = &self.panic {
            bail!("kernel panic in the VM: {p}\nlast lines:\n{tail}\nlog: {log}");
        }
        if self.timed_out {
            bail!(
                "the VM run timed out after {}s (qemu killed){}\nlast lines:\n{tail}\nlog: {log}",
                opts.timeout.as_secs(),
                if self.result.is_some() {
                    " after the suite finished, while powering off"
                } else {
                    ""
                }
            );
        }
        let Some(rc) = self.result else {
            bail!(
                "the VM stopped without the result marker (qemu {})\nlast lines:\n{tail}\nlog: {log}",
                self.qemu_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "status unknown".into()),
            );
        };
        if rc != 0 {
            let failed = if self.failed_tests.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", self.failed_tests.join(", "))
            };
            bail!(
                "the kernel suite failed in the VM (rc={rc}{failed}): {}",
                self.report
            );
        }
        Ok(self.report)
    }
}

fn boot(
    opts: &VmOptions,
    kernel: &Path,
    initramfs: &Path,
    log_path: &Path,
    nonce: &str,
    mut initramfs_guard: RemoveOnDrop,
) -> Result<Run> {
    let qemu = which("qemu-system-x86_64")
        .context("qemu-system-x86_64 not found: install qemu-system-x86")?;
    let append = [
        "console=ttyS0",
        "panic=-1",
        "quiet",
        "rdinit=/init",
        "cgroup_no_v1=all",
        "systemd.unified_cgroup_hierarchy=1",
        "8250.nr_uarts=1",
        "mitigations=off",
    ]
    .join(" ");
    // setpriv --pdeathsig: qemu dies with the thread that started it even if xtask is SIGKILLed.
    let mut cmd = match which("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&qemu);
            c
        }
        None => Command::new(&qemu),
    };
    cmd.args([
        "-nographic",
        "-nodefaults",
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .args(["-accel", "tcg", "-cpu", "max"])
    .args(["-m", &opts.memory_mib.to_string()])
    .args(["-smp", &opts.cpus.to_string()])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initramfs)
    .args(["-append", &append])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());

    let log = Arc::new(Mutex::new(
        File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?,
    ));
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut qemu_guard = QemuGuard(child);
    let (tx, rx) = mpsc::channel();
    let stdout = qemu_guard.0.stdout.take().context("qemu stdout")?;
    let stderr = qemu_guard.0.stderr.take().context("qemu stderr")?;
    let echo = opts.echo;
    let (log1, tx1) = (Arc::clone(&log), tx.clone());
    let out_thread = thread::spawn(move || pump(stdout, log1, echo, "", tx1));
    let log2 = Arc::clone(&log);
    let err_thread = thread::spawn(move || pump(stderr, log2, true, "[qemu stderr] ", tx));

    let mut run = Run {
        report: VmReport {
            exit_code: -1,
            kernel_version: String::new(),
            kernel_boot: Duration::ZERO,
            boot: Duration::ZERO,
            suite: Duration::ZERO,
            total: Duration::ZERO,
            summary: None,
            missing_modules: Vec::new(),
            log: log_path.to_path_buf(),
        },
        guest_missing: Vec::new(),
        result: None,
        panic: None,
        timed_out: false,
        qemu_status: None,
        tail: Vec::new(),
        failed_tests: Vec::new(),
    };
    let booted_marker = format!("CORRAL-VM-BOOTED-{nonce}");
    let result_marker = format!("CORRAL-VM-RESULT-{nonce} rc=");
    let missing_marker = format!("CORRAL-VM-MISSING-{nonce}");
    let mut deadline = start + opts.timeout;
    let mut booted_at = None;
    let mut eofs = 0;
    while eofs < 2 {
        let now = Instant::now();
        if now >= deadline {
            run.timed_out = true;
            break;
        }
        let ev = match rx.recv_timeout(deadline - now) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (line, at) = match ev {
            Event::Eof => {
                eofs += 1;
                continue;
            }
            Event::Line(l, at) => (l, at),
        };
        // The guest runs, so qemu has loaded the initramfs (at machine setup): not needed now.
        initramfs_guard.remove_now();
        if run.report.kernel_boot.is_zero() && line.contains("corral-vm: init at") {
            run.report.kernel_boot = at - start;
        }
        if let Some(rest) = line.split(&missing_marker).nth(1) {
            run.guest_missing = rest.split_whitespace().map(str::to_string).collect();
        } else if line.contains(&booted_marker) {
            run.report.boot = at - start;
            booted_at = Some(at);
        } else if let Some(rest) = line.split(&result_marker).nth(1) {
            let rc = rest.split_whitespace().next().unwrap_or("");
            run.result = Some(rc.parse().unwrap_or(-1));
            run.report.exit_code = run.result.unwrap_or(-1);
            run.report.suite = booted_at.map(|b| at - b).unwrap_or_default();
            // Now only the poweroff is left.
            deadline = deadline.min(Instant::now() + Duration::from_secs(60));
        } else if let Some(i) = line.find("Kernel panic")
            && run.panic.is_none()
        {
            run.panic = Some(line[i..].trim().to_string());
            deadline = deadline.min(Instant::now() + Duration::from_secs(10));
        } else if line.starts_with("test result:") {
            run.report.summary = Some(line.trim().to_string());
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|r| r.strip_suffix(" ... FAILED"))
        {
            run.failed_tests.push(name.to_string());
        }
        run.tail.push(line);
        if run.tail.len() > 30 {
            run.tail.remove(0);
        }
    }
    // Reap (or kill) qemu, then let the pumps drain.
    if run.timed_out {
        let _ = qemu_guard.0.kill();
    }
    run.qemu_status = wait_timeout(&mut qemu_guard.0, Duration::from_secs(5));
    drop(qemu_guard);
    let _ = out_thread.join();
    let _ = err_thread.join();
    run.report.total = start.elapsed();
    if run.timed_out
        && let Ok(mut f) = log.lock()
    {
        let _ = writeln!(
            f,
            "\n[xtask vm] timed out after {}s",
            opts.timeout.as_secs()
        );
    }
    Ok(run)
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                return child.wait().ok();
            }
        }
    }
}

/// Copies a stream to the log (and the terminal), sending complete lines to the watcher.
fn pump(
    mut src: impl Read,
    log: Arc<Mutex<File>>,
    echo: bool,
    prefix: &str,
    tx: mpsc::Sender<Event>,
) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    let mut at_line_start = true;
    // Terminal control sequences (SeaBIOS clears the screen): dropped.
    let mut esc = Esc::None;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        let mut chunk = Vec::with_capacity(n + prefix.len());
        for &b in &buf[..n] {
            esc = match (esc, b) {
                (Esc::None, 0x1b) => Esc::Start,
                (Esc::None, _) => Esc::None,
                (Esc::Start, b'[') => Esc::Csi,
                (Esc::Csi, 0x20..=0x3f) => Esc::Csi,
                (Esc::Start | Esc::Csi, _) => Esc::End,
                (Esc::End, 0x1b) => Esc::Start,
                (Esc::End, _) => Esc::None,
            };
            if esc != Esc::None || b == b'\r' {
                continue;
            }
            if at_line_start && !prefix.is_empty() {
                chunk.extend_from_slice(prefix.as_bytes());
            }
            chunk.push(b);
            at_line_start = b == b'\n';
            if b == b'\n' {
                let _ = tx.send(Event::Line(
                    String::from_utf8_lossy(&line).into_owned(),
                    now,
                ));
                line.clear();
            } else {
                line.push(b);
            }
        }
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(&chunk);
        }
        if echo {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&chunk);
            let _ = out.flush();
        }
    }
    if !line.is_empty() {
        let _ = tx.send(Event::Line(
            String::from_utf8_lossy(&line).into_owned(),
            Instant::now(),
        ));
    }
    let _ = tx.send(Event::Eof);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Start,
    Csi,
    End,
}

fn nonce() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", t & 0xffff_ffff_ffff, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_naturally() {
        let mut v = vec![
            "6.1.0-9-amd64",
            "6.1.0-56-amd64",
            "6.12.3-amd64",
            "6.1.0-10-amd64",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            v,
            [
                "6.1.0-9-amd64",
                "6.1.0-10-amd64",
                "6.1.0-56-amd64",
                "6.12.3-amd64"
            ]
        );
    }

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x7f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            ldd_paths(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn sh_quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
    }

    #[test]
    fn module_paths_lose_compression_suffix() {
        assert_eq!(
            guest_module_path(Path::new(
                "/lib/modules/k/kernel/fs/overlayfs/overlay.ko.xz"
            )),
            "/.modules/lib/modules/k/kernel/fs/overlayfs/overlay.ko"
        );
    }

    #[test]
    fn init_scripts_parse() {
        let insmods = vec![(
            "/.modules/lib/modules/k/kernel/fs/overlayfs/overlay.ko".to_string(),
            vec!["opt=1".to_string()],
        )];
        let env = vec![("CORRAL_BIN".to_string(), "/usr/local/bin/it's".to_string())];
        let args = vec!["kernel::".to_string(), "a b'c".to_string()];
        for script in [
            stage1_script(&insmods),
            stage2_script(&env, "/usr/local/bin/it", &args, "n0nce"),
        ] {
            let out = Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .expect("run sh -n");
            assert!(out.status.success(), "{script}\n{out:?}");
        }
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut c = Cpio::new(Vec::new());
        c.file_bytes("/a/b", b"hello", 0o644).expect("file");
        c.symlink("/a/c", "/a/b").expect("link");
        let n = c.out.len();
        assert_eq!(n % 4, 0);
        c.finish().expect("finish");
    }
}
