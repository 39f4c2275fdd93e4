//! A workload for kernel tests, run inside a cgroup:
//!
//! - `testload [--gate] burn SECONDS`: spin on one CPU for SECONDS of wall time;
//! - `testload [--gate] alloc MIB [HOLD_SECONDS]`: allocate MIB MiB and write every page, print
//!   `allocated MIB`, then stay alive HOLD_SECONDS (default 0);
//! - `testload [--gate] forks N`: try to start N children that sleep, print `forked K` (how
//!   many started), kill them and exit;
//! - `testload [--gate] sleep SECONDS`;
//! - `testload syscalls`: inside a container, try every syscall the seccomp profile blocks (plain
//!   and with high bits in `int` arguments) and a few allowed ones; one `NAME=RESULT` line each
//!   (see `testload/syscalls.rs`).
//!
//! `--gate` waits for one line on stdin first, so a test can move the process into a cgroup
//! before it does anything. Single-threaded on purpose: the pid count of `forks` is exact.

use std::{
    io::{BufRead, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[path = "testload/syscalls.rs"]
mod syscalls;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--gate") {
        args.remove(0);
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.first().map(String::as_str) {
        Some("burn") => burn(Duration::from_secs(num(1))),
        Some("alloc") => alloc(
            num(1),
            args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
        ),
        Some("forks") => forks(num(1)),
        Some("sleep") => std::thread::sleep(Duration::from_secs(num(1))),
        Some("syscalls") => syscalls::run(),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: testload [--gate] burn SECONDS | alloc MIB [HOLD_SECONDS] | forks N | sleep SECONDS | syscalls"
    );
    std::process::exit(2)
}

fn burn(d: Duration) {
    let start = Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < d {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    std::hint::black_box(x);
}

fn alloc(mib: u64, hold: u64) {
    let len = (mib as usize) << 20;
    // vec! gets zeroed pages from the kernel without touching them: write one byte per page.
    let mut v: Vec<u8> = vec![0; len];
    for i in (0..len).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
    println!("allocated {mib}");
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(hold));
    std::hint::black_box(&v);
}

fn forks(n: u64) {
    let exe = std::env::current_exe().unwrap_or_else(|_| usage());
    let mut children = Vec::new();
    for _ in 0..n {
        match Command::new(&exe)
            .args(["sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(e) => eprintln!("fork failed: {e}"),
        }
    }
    println!("forked {}", children.len());
    let _ = std::io::stdout().flush();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
