//! The processes of a running container (`corral top`, `GET /api/v1/containers/{name}/top`
//! and the Docker API's `docker top`, which all call [`Manager::top`]).
//!
//! The PIDs come from the container's `cgroup.procs` (every hierarchy it has: the cgroup2
//! group and the v1 ones on a hybrid host, through the cgroup driver); each process is read
//! from `/proc/PID/{stat,status,cmdline}` in the daemon's (the host's) PID namespace, so the
//! PIDs are host PIDs, as `docker top` shows them. A process that exits between the two reads
//! is left out. The columns are those of `ps -ef`: [`ps_row`] formats them (STIME in UTC).

use std::path::Path;

use super::{Manager, RuntimeError};

/// `ps -ef`'s columns, as `docker top` names them.
pub const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ: 100 on every Linux architecture
/// Corral runs on; the kernel converts to it for this ABI whatever its own HZ).
const USER_HZ: u64 = 100;

/// The fields of `/proc/PID/stat` that `ps -ef` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: i32,
    pub tty_nr: i64,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Start after boot, clock ticks.
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`. `comm` may hold spaces and parentheses: the fields start after
/// the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // f[0] is the state; the man page's field n is f[n - 3].
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    Some(Stat {
        comm,
        ppid: num(1)? as i32,
        tty_nr: num(4)?,
        cpu_ticks: (num(11)? + num(12)?).max(0) as u64,
        start_ticks: num(19)?.max(0) as u64,
    })
}

/// The effective uid of `/proc/PID/status` (`Uid:` real, effective, saved, fs), as `ps -ef`.
pub fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// `tty_nr` as a device name: `pts/N`, `ttyN`, `ttySN`, `console`; `None` for no terminal.
pub fn tty_name(tty_nr: i64) -> Option<String> {
    if tty_nr == 0 {
        return None;
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    Some(match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 1 => "console".into(),
        _ => format!("{major}:{minor}"),
    })
}

/// A command line from `/proc/PID/cmdline` (NUL-separated); `[comm]` when it is empty.
pub fn command_line(raw: &[u8], comm: &str) -> String {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    }
}

/// `ps`'s `TIME`: `[DD-]HH:MM:SS` of whole seconds.
pub fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `ps`'s `STIME` (UTC): `HH:MM` when it started today, `MonDD` this year, else the year.
pub fn start_time(started: i64, now: i64) -> String {
    use crate::metering::calendar::civil_from_days;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (day, now_day) = (started.div_euclid(86_400), now.div_euclid(86_400));
    let (y, m, d) = civil_from_days(day);
    if day == now_day {
        let s = started.rem_euclid(86_400);
        format!("{:02}:{:02}", s / 3600, s / 60 % 60)
    } else if civil_from_days(now_day).0 == y {
        format!("{}{d:02}", MONTHS[(m as usize).saturating_sub(1) % 12])
    } else {
        y.to_string()
    }
}

/// `ps`'s `C`: CPU time over the time since the process started, in percent, at most 99.
pub fn cpu_percent(cpu_ticks: u64, start_ticks: u64, uptime_secs: f64) -> u32 {
    let alive = uptime_secs - start_ticks as f64 / USER_HZ as f64;
    if alive <= 0.0 {
        return 0;
    }
    let pct = cpu_ticks as f64 / USER_HZ as f64 * 100.0 / alive;
    (pct as u32).min(99)
}

/// `user:x:uid:…` lines of a passwd file: the name of `uid`.
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// One row of `docker top` / `corral top`, in [`TITLES`]' order.
pub fn ps_row(p: &wire::ContainerProcess, now: i64) -> Vec<String> {
    vec![
        p.user.clone(),
        p.pid.to_string(),
        p.ppid.to_string(),
        p.cpu_percent.to_string(),
        start_time(p.started_at, now),
        p.tty.clone().unwrap_or_else(|| "?".into()),
        cpu_time(p.cpu_seconds as u64),
        p.command.clone(),
    ]
}

/// Host facts every process's columns need: boot time, uptime, the host's user names.
struct Host {
    boot_time: i64,
    uptime: f64,
    passwd: String,
}

impl Host {
    fn read(proc_root: &Path) -> Self {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let boot_time = read(&proc_root.join("stat"))
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let uptime = read(&proc_root.join("uptime"))
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Host {
            boot_time,
            uptime,
            passwd: read(Path::new("/etc/passwd")),
        }
    }

    /// The process `pid`, or `None` when it is gone.
    fn process(&self, proc_root: &Path, pid: i32) -> Option<wire::ContainerProcess> {
        let dir = proc_root.join(pid.to_string());
        let stat = parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
        let uid = parse_uid(&std::fs::read_to_string(dir.join("status")).ok()?)?;
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        Some(wire::ContainerProcess {
            pid,
            ppid: stat.ppid,
            uid,
            user: user_name(&self.passwd, uid).unwrap_or_else(|| uid.to_string()),
            cpu_percent: cpu_percent(stat.cpu_ticks, stat.start_ticks, self.uptime),
            started_at: self.boot_time + (stat.start_ticks / USER_HZ) as i64,
            tty: tty_name(stat.tty_nr),
            cpu_seconds: stat.cpu_ticks as f64 / USER_HZ as f64,
            command: command_line(&cmdline, &stat.comm),
        })
    }
}

impl Manager {
    /// The processes of a running (or paused) container, by host PID; a conflict when it is
    /// not running.
    pub async fn top(&self, name: &str) -> Result<Vec<wire::ContainerProcess>, RuntimeError> {
        let c = self.get(name).await?;
        if !crate::runtime::status::Status::live_str(&c.status) {
            return Err(RuntimeError::Conflict {
                name: c.name,
                status: c.status,
                message: "not running".into(),
            });
        }
        let cgroups = self.cgroups().clone();
        tokio::task::spawn_blocking(move || {
            let pids = cgroups
                .procs(&c.team, &c.name)
                .map_err(|e| RuntimeError::Cgroup(e.message))?;
            let proc_root = Path::new("/proc");
            let host = Host::read(proc_root);
            Ok(pids
                .into_iter()
                .filter_map(|pid| host.process(proc_root, pid))
                .collect())
        })
        .await
        .map_err(|e| RuntimeError::Io {
            action: "read",
            path: "/proc".into(),
            source: std::io::Error::other(e),
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_odd_command_names() {
        let line = "4242 (my (odd) cmd) S 4200 4242 4242 34816 4242 4194560 120 0 0 0 \
                    250 50 0 0 20 0 1 0 123456 1236992 60 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "my (odd) cmd");
        assert_eq!(s.ppid, 4200);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.cpu_ticks, 300);
        assert_eq!(s.start_ticks, 123456);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 0").is_none());
    }

    #[test]
    fn uids_ttys_and_commands_read_like_ps() {
        let status = "Name:\tsleep\nUid:\t1000\t100000\t100000\t100000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_uid(status), Some(100000));
        assert_eq!(tty_name(0), None);
        assert_eq!(tty_name(34816).as_deref(), Some("pts/0"));
        assert_eq!(tty_name((136 << 8) | 5).as_deref(), Some("pts/5"));
        assert_eq!(tty_name((4 << 8) | 1).as_deref(), Some("tty1"));
        assert_eq!(tty_name((4 << 8) | 64).as_deref(), Some("ttyS0"));
        assert_eq!(command_line(b"sleep\x00300\x00", "sleep"), "sleep 300");
        assert_eq!(command_line(b"", "kworker/0:1"), "[kworker/0:1]");
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        assert_eq!(user_name(passwd, 65534).as_deref(), Some("nobody"));
        assert_eq!(user_name(passwd, 7), None);
    }

    #[test]
    fn times_read_like_ps() {
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3725), "01:02:05");
        assert_eq!(cpu_time(2 * 86_400 + 61), "2-00:01:01");
        // 2026-12-04 18:09:00 UTC.
        let now = 1_796_407_740;
        assert_eq!(start_time(now - 3600, now), "17:09");
        assert_eq!(start_time(now - 3 * 86_400, now), "Dec01");
        assert_eq!(start_time(now - 400 * 86_400, now), "2025");
        assert_eq!(cpu_percent(50, 0, 100.0), 0);
        assert_eq!(cpu_percent(5_000, 0, 100.0), 50);
        assert_eq!(cpu_percent(100_000, 0, 100.0), 99);
        assert_eq!(cpu_percent(10, 200, 1.0), 0);
    }

    #[test]
    fn rows_follow_the_titles() {
        let p = wire::ContainerProcess {
            pid: 4242,
            ppid: 4200,
            uid: 0,
            user: "root".into(),
            cpu_percent: 0,
            started_at: 1_796_407_740,
            tty: None,
            cpu_seconds: 0.3,
            command: "sleep 300".into(),
        };
        let row = ps_row(&p, 1_796_407_800);
        assert_eq!(row.len(), TITLES.len());
        assert_eq!(
            row,
            [
                "root",
                "4242",
                "4200",
                "0",
                "18:09",
                "?",
                "00:00:00",
                "sleep 300"
            ]
        );
    }
}
