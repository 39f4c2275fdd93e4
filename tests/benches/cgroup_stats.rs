//! µs per cgroup per stats sample over 1000 groups: opening every stat file each time
//! (`Group::stats`) versus keeping the files open and re-reading them with `pread`
//! (`StatsReader`). Creates its own subtree and removes it. Run as root:
//! `cargo bench -p tests --bench cgroup_stats`.

use std::{fs::File, io::Read, path::PathBuf, time::Instant};

use backend::cgroup::{CgroupMode, Cgroups, GroupPath};

const GROUPS: usize = 1000;
const ROUNDS: usize = 5;

struct Cleanup(Cgroups);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_subtree() {
            eprintln!("cleanup failed: {e}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    raise_fd_limit();
    let cg = Cleanup(Cgroups::host(&tests::unique("corral-bench"))?);
    let t = Instant::now();
    let mut groups = Vec::with_capacity(GROUPS);
    for i in 0..GROUPS {
        groups.push(cg.0.create(&GroupPath::new([format!("c{i}")])?)?);
    }
    let created = t.elapsed();

    // Warm up the dentry cache once, as a daemon that samples every second would have.
    for g in &groups {
        std::hint::black_box(g.stats());
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for g in &groups {
            std::hint::black_box(g.stats());
        }
    }
    let open_each = t.elapsed().as_secs_f64() * 1e6 / (ROUNDS * GROUPS) as f64;

    let mut readers: Vec<_> = groups.iter().map(|g| g.stats_reader()).collect();
    let files = readers.first().map(|r| r.open_files()).unwrap_or(0);
    for r in &mut readers {
        std::hint::black_box(r.sample());
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for r in &mut readers {
            std::hint::black_box(r.sample());
        }
    }
    let kept_open = t.elapsed().as_secs_f64() * 1e6 / (ROUNDS * GROUPS) as f64;
    drop(readers);

    // The 4 files a usage sampler needs most (CPU usage, memory usage, memory.stat, pids),
    // read raw, to compare with the numbers in STACK.md.
    let names: [&str; 4] = if cg.0.mode() == CgroupMode::V2 {
        ["cpu.stat", "memory.current", "memory.stat", "pids.current"]
    } else {
        [
            "cpuacct.usage",
            "memory.usage_in_bytes",
            "memory.stat",
            "pids.current",
        ]
    };
    let core: Vec<Vec<PathBuf>> = groups
        .iter()
        .map(|g| {
            names
                .iter()
                .filter_map(|n| g.dirs().map(|d| d.join(n)).find(|p| p.exists()))
                .collect()
        })
        .collect();
    let core_files = core.first().map(Vec::len).unwrap_or(0);
    let mut buf = vec![0u8; 16 * 1024];
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for paths in &core {
            for p in paths {
                let mut f = File::open(p)?;
                let n = f.read(&mut buf)?;
                std::hint::black_box(&buf[..n]);
            }
        }
    }
    let core_open = t.elapsed().as_secs_f64() * 1e6 / (ROUNDS * GROUPS) as f64;
    let files_open: Vec<Vec<File>> = core
        .iter()
        .map(|ps| ps.iter().filter_map(|p| File::open(p).ok()).collect())
        .collect();
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for fs in &files_open {
            for f in fs {
                let n = nix::sys::uio::pread(f, &mut buf, 0)?;
                std::hint::black_box(&buf[..n]);
            }
        }
    }
    let core_kept = t.elapsed().as_secs_f64() * 1e6 / (ROUNDS * GROUPS) as f64;
    drop(files_open);

    println!(
        "cgroup stats, {} host, {GROUPS} groups, {ROUNDS} samples each, {files} files per group",
        cg.0.mode()
    );
    println!("| method                                  | files | µs per cgroup per sample |");
    println!("|-----------------------------------------|-------|--------------------------|");
    println!("| Group::stats (open/read/close each)     | {files:>5} | {open_each:>24.1} |");
    println!("| StatsReader (kept open, pread + parse)  | {files:>5} | {kept_open:>24.1} |");
    println!("| core files, open/read/close each        | {core_files:>5} | {core_open:>24.1} |");
    println!("| core files, kept open, pread            | {core_files:>5} | {core_kept:>24.1} |");
    println!("(core files: {})", names.join(", "));
    println!(
        "(creating the {GROUPS} groups took {:.0} ms; speed-up {:.1}x)",
        created.as_secs_f64() * 1e3,
        open_each / kept_open
    );
    let t = Instant::now();
    drop(groups);
    drop(cg);
    println!(
        "(removing them took {:.0} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Kept-open readers hold ~15 files per group: raise the soft fd limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
