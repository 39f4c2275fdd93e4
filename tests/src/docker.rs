//! The real `docker` CLI against Corral's Docker socket (`corral serve --docker-socket`).

use std::{path::Path, process::Command};

/// `docker -H unix://SOCK ARGS`: (exit code, stdout, stderr).
pub fn docker(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = command(sock)
        .args(args)
        .output()
        .expect("run docker (apt-get install docker.io)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker -H unix://SOCK ARGS`, which must succeed: its stdout (a failure panics with the
/// command and what docker printed).
pub fn docker_ok(sock: &Path, args: &[&str]) -> String {
    let (code, out, err) = docker(sock, args);
    assert_eq!(code, 0, "docker {}: {err}{out}", args.join(" "));
    out
}

/// `docker -H unix://SOCK` with a config directory of its own, not run yet.
pub fn command(sock: &Path) -> Command {
    let mut c = Command::new("docker");
    c.arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .env_remove("DOCKER_HOST")
        .env(
            "DOCKER_CONFIG",
            std::env::temp_dir().join("corral-it-docker-config"),
        );
    c
}

/// Sizes as `docker system df` prints them (go-units' `HumanSize`: decimal units, four
/// significant digits, trailing zeros dropped): `1.982MB`, `512kB`, `0B`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let (mut v, mut i) = (n as f64, 0);
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{s}{}", UNITS[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_the_docker_cli() {
        use super::human_size;
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(1_982_120), "1.982MB");
        assert_eq!(human_size(1_200_000), "1.2MB");
        assert_eq!(human_size(101_000), "101kB");
        assert_eq!(human_size(101_060), "101.1kB");
    }
}
