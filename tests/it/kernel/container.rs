//! Containers on the real kernel: isolation, hardening, limits, freeze, exec, the monitor
//! surviving a daemon crash, and nothing left after `rm`. Run as root with
//! `--test-threads=1`; they work on this hybrid host and in the pure cgroup-v2 VM.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{
        Reaper, action, call, cgroup_mounts, create, exec, facts, get, logs, remove, wait_exited,
    },
    rootfs::Rootfs,
};

/// Docker's 14 default capabilities less NET_RAW (bit 13) as the kernel prints them in
/// /proc/PID/status.
const DOCKER_CAPS_HEX: &str = "00000000a80405fb";

fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s[s.rfind(')').unwrap_or(0) + 1..]
                .split_whitespace()
                .next()
                .unwrap_or("X")
                .to_owned();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Runs `script` under `sh -c` to completion; returns (exit code, output).
async fn run_script(
    c: &Client,
    rootfs: &Rootfs,
    extra: serde_json::Value,
    script: &str,
) -> (i32, String) {
    let name = tests::unique("ct");
    let mut spec = serde_json::json!({
        "name": name,
        "rootfs": rootfs.path(),
        "command": ["/bin/sh", "-c", script],
        "start": true,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    create(c, spec).await;
    let ct = wait_exited(c, &name, Duration::from_secs(30)).await;
    let out = logs(c, &name).await;
    remove(c, &name).await;
    (ct.exit_code.expect("exit code"), out)
}

/// The container's interfaces: `lo`, plus at most the fallback tunnels some kernels create in
/// every namespace, and none of the host's own.
fn assert_own_netns(devs: &str) {
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    let host: Vec<&str> = host
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    let fallback = [
        "sit0", "tunl0", "ip6tnl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "ip6gre0",
    ];
    let devs: Vec<&str> = devs.split_whitespace().collect();
    assert!(devs.contains(&"lo"), "loopback present: {devs:?}");
    for d in &devs {
        assert!(
            *d == "lo" || fallback.contains(d) || !host.contains(d),
            "host interface {d} visible in the container: {devs:?}"
        );
        assert!(
            *d == "lo" || fallback.contains(d),
            "unexpected interface {d}: {devs:?}"
        );
    }
}

/// Soft and hard "Max open files" of a process, from /proc/PID/limits.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let mut v = line["Max open files".len()..].split_whitespace();
    (v.next().unwrap().to_owned(), v.next().unwrap().to_owned())
}

#[tokio::test]
async fn container_is_isolated_and_hardened() {
    // The daemon starts below its hard open-file limit, as under systemd, so that raising its
    // own (for the sampler's kept-open files) and giving containers the starting one back are
    // both visible. Lowered for this whole test process: tests keep far fewer files open.
    let nofile = nix::sys::resource::Resource::RLIMIT_NOFILE;
    let (soft, hard) = nix::sys::resource::getrlimit(nofile).expect("getrlimit");
    let start = soft.min(hard / 2);
    nix::sys::resource::setrlimit(nofile, start, hard).expect("setrlimit");
    let daemon = Daemon::start();
    assert_eq!(
        open_file_limits(daemon.pid().expect("daemon pid")),
        (hard.to_string(), hard.to_string()),
        "the daemon raised its soft limit"
    );
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let script = r#"
        echo pid=$$
        echo procs=$(ls /proc | grep -c '^[0-9]')
        echo ppid1=$(cat /proc/1/cmdline | tr '\0' ' ')
        echo hostname=$(hostname)
        for k in CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp; do
            echo $k=$(grep "^$k:" /proc/self/status | cut -f2)
        done
        (echo c > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=written || echo sysrq=refused
        (echo evil > /proc/sys/kernel/hostname) 2>/dev/null && echo procsys=written || echo procsys=refused
        mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=refused
        unshare -n true 2>/dev/null && echo unshare=ok || echo unshare=refused
        echo dev=$(ls /dev | sort | tr '\n' ' ')
        echo sysmount=$(grep ' /sys ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1)
        echo procmount=$(grep ' /proc proc' /proc/self/mounts | cut -d' ' -f4)
        [ -e /proc/keys ] && echo keys=$(wc -c < /proc/keys) || echo keys=0
        echo netdevs=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
        echo loflags=$(cat /sys/class/net/lo/flags)
        echo fds=$(ls /proc/self/fd | wc -l)
        echo nofile=$(grep '^Max open files' /proc/self/limits | tr -s ' ' | cut -d' ' -f4)
        echo pwd=$(pwd)
        echo foo=$FOO
        echo new > /etc/image-file && echo cow=$(cat /etc/image-file)
        echo rootfs=$(grep -m1 ' / ' /proc/self/mounts | cut -d' ' -f3)
        echo oldroot=$(grep -c ' /tmp/\| /work/\| /home/' /proc/self/mounts)
    "#;
    let (code, out) = run_script(
        &c,
        &rootfs,
        serde_json::json!({"hostname": "boxy", "env": ["FOO=bar"], "workdir": "/tmp"}),
        script,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let f = facts(&out);
    assert_eq!(f["pid"], "1", "the command is PID 1:\n{out}");
    let procs: u32 = f["procs"].parse().unwrap();
    assert!(
        procs <= 4,
        "host processes are invisible, saw {procs}:\n{out}"
    );
    assert!(f["ppid1"].starts_with("/bin/sh -c"), "{out}");
    assert_eq!(f["hostname"], "boxy");
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(f[k], DOCKER_CAPS_HEX, "{k}:\n{out}");
    }
    assert_eq!(f["CapInh"], "0000000000000000");
    assert_eq!(f["CapAmb"], "0000000000000000");
    assert_eq!(f["NoNewPrivs"], "1");
    assert_eq!(f["Seccomp"], "2", "seccomp filter mode");
    assert_eq!(
        f["nofile"],
        start.to_string(),
        "the container starts with the daemon's starting limit, not its raised one:\n{out}"
    );
    assert_eq!(f["sysrq"], "refused");
    assert_eq!(f["procsys"], "refused", "/proc/sys is read-only");
    assert_eq!(f["mount"], "refused");
    assert_eq!(f["unshare"], "refused");
    assert_eq!(
        f["dev"],
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(f["sysmount"], "ro", "/sys is read-only");
    assert!(
        f["procmount"].contains("nosuid")
            && f["procmount"].contains("nodev")
            && f["procmount"].contains("noexec"),
        "{out}"
    );
    assert_eq!(f["keys"], "0", "/proc/keys is masked");
    assert_own_netns(&f["netdevs"]);
    let flags = u32::from_str_radix(f["loflags"].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "loopback is up");
    assert!(
        f["fds"].parse::<u32>().unwrap() <= 4,
        "only stdio is inherited:\n{out}"
    );
    assert_eq!(f["pwd"], "/tmp");
    assert_eq!(f["foo"], "bar");
    assert_eq!(f["cow"], "new");
    assert_eq!(
        fs::read_to_string(rootfs.path().join("etc/image-file")).unwrap(),
        "from the image\n",
        "writes go to the container's own layer"
    );
    assert_eq!(f["rootfs"], "overlay", "the overlay layer is /");
    assert_eq!(
        f["oldroot"], "0",
        "pivot_root left no host mount visible:\n{out}"
    );
}

#[tokio::test]
async fn non_root_user_has_no_capabilities() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let (code, out) = run_script(
        &c,
        &rootfs,
        serde_json::json!({"user": "1000:1000"}),
        "echo uid=$(id -u) gid=$(id -g); echo CapEff=$(grep ^CapEff: /proc/self/status | cut -f2); echo CapBnd=$(grep ^CapBnd: /proc/self/status | cut -f2)",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("uid=1000 gid=1000"), "{out}");
    let f = facts(&out);
    assert_eq!(f["CapEff"], "0000000000000000");
    assert_eq!(f["CapBnd"], DOCKER_CAPS_HEX);
}

#[tokio::test]
async fn mounts_bind_ro_rw_and_tmpfs() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let ro = TempDir::new("corral-ro");
    fs::write(ro.path().join("hello"), "host data\n").unwrap();
    let rw = TempDir::new("corral-rw");
    let (code, out) = run_script(
        &c,
        &rootfs,
        serde_json::json!({"mounts": [
            {"type": "bind", "source": ro.path(), "destination": "/data", "readonly": true},
            {"type": "bind", "source": rw.path(), "destination": "/out"},
            {"type": "tmpfs", "destination": "/scratch"}
        ]}),
        "echo read=$(cat /data/hello); (echo x > /data/new) 2>/dev/null && echo rowrite=ok || echo rowrite=refused; echo written > /out/file; echo scratch=$(grep ' /scratch ' /proc/self/mounts | cut -d' ' -f3)",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let f = facts(&out);
    assert_eq!(f["read"], "host data");
    assert_eq!(f["rowrite"], "refused");
    assert_eq!(f["scratch"], "tmpfs");
    assert_eq!(
        fs::read_to_string(rw.path().join("file")).unwrap(),
        "written\n"
    );
    assert!(!ro.path().join("new").exists());
}

#[tokio::test]
async fn pids_limit_is_in_force() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let (code, out) = run_script(
        &c,
        &rootfs,
        serde_json::json!({"limits": {"pids_max": 10}}),
        "(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 5 & done) 2>/dev/null; echo subshell=$?; set -- /proc/[0-9]*; echo procs=$#; kill -9 -1; exit 0",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let f = facts(&out);
    let procs: u32 = f["procs"].parse().unwrap();
    assert!(
        procs <= 10,
        "pids.max 10 holds, saw {procs} processes:\n{out}"
    );
    assert!(procs >= 8, "the loop got up to the limit:\n{out}");
    assert_ne!(f["subshell"], "0", "fork failed at the limit:\n{out}");
}

#[tokio::test]
async fn default_pids_limit_and_live_update() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(), "command": ["sleep", "1000"],
                           "start": true, "limits": {"memory_max": 128 << 20}}),
    )
    .await;
    assert_eq!(ct.limits.pids_max, Some(2048), "default pids limit");
    let k: wire::Limits = call(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{name}/limits"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(k.pids_max, Some(2048), "in the kernel");
    assert_eq!(k.memory_max, Some(128 << 20));
    // Merge: a new pids limit keeps the memory limit.
    let _: wire::Container = call(
        &c,
        Method::PATCH,
        &format!("/api/v1/containers/{name}/limits"),
        Some(serde_json::json!({"pids_max": 64})),
    )
    .await
    .unwrap();
    let k: wire::Limits = call(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{name}/limits"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(k.pids_max, Some(64));
    assert_eq!(k.memory_max, Some(128 << 20), "unrelated limit untouched");
    // A rejected change leaves the old limits.
    let err = call::<wire::Container>(
        &c,
        Method::PATCH,
        &format!("/api/v1/containers/{name}/limits"),
        Some(serde_json::json!({"pids_max": 32, "cpuset_cpus": "9999"})),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status, .. } if status.as_u16() == 400),
        "{err:?}"
    );
    let k: wire::Limits = call(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{name}/limits"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(k.pids_max, Some(64), "rejected change left the old limit");
    assert_eq!(get(&c, &name).await.limits.pids_max, Some(64));
    remove(&c, &name).await;
}

#[tokio::test]
async fn freeze_stops_progress() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; usleep 10000; done"],
            "start": true}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ct: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/freeze"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ct.status, "paused");
    let a = logs(&c, &name).await.len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b = logs(&c, &name).await.len();
    assert_eq!(a, b, "no output while frozen");
    let _: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/thaw"),
        None,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let d = logs(&c, &name).await.len();
    assert!(d > b, "progress resumes after thaw");
    // A frozen container can still be stopped.
    let _: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/freeze"),
        None,
    )
    .await
    .unwrap();
    let ct: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/stop"),
        Some(serde_json::json!({"timeout": 1})),
    )
    .await
    .unwrap();
    assert_eq!(ct.status, "exited");
    remove(&c, &name).await;
}

/// Kill reaches a paused container the way `docker kill` does: KILL ends it (exited, 137, its
/// freezer thawed, so a start runs rather than starting frozen; a manual stop, so its restart
/// policy does not bring it back); any other signal is refused while it is frozen and changes
/// nothing. On the host's v1 freezer a frozen task dies only on
/// thaw, on cgroup v2 SIGKILL passes the freezer: the VM run covers that one.
#[tokio::test]
async fn kill_reaches_a_paused_container() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", "trap '' TERM; i=0; while true; do i=$((i+1)); echo $i; usleep 10000; done"],
            "restart": "always", "start": true}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ct: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/freeze"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ct.status, "paused");
    let pid = ct.pid.expect("a running container has a pid");
    let err = call::<wire::Container>(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/kill"),
        Some(serde_json::json!({"signal": "TERM"})),
    )
    .await
    .unwrap_err();
    match &err {
        ClientError::Api {
            status, message, ..
        } => {
            assert_eq!(status.as_u16(), 409, "{err:?}");
            assert!(message.contains("only KILL"), "{err:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        get(&c, &name).await.status,
        "paused",
        "a refused signal changes nothing"
    );
    assert!(pid_alive(pid));
    let ct: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/kill"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ct.status, "exited", "{ct:?}");
    assert_eq!(ct.exit_code, Some(137));
    assert!(!pid_alive(pid), "the frozen init is gone");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ct = get(&c, &name).await;
    assert_eq!(
        (ct.status.as_str(), ct.restart_count),
        ("exited", 0),
        "a kill is a manual stop: restart=always leaves it down"
    );
    // Its group is not left frozen: a start runs.
    let _: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/start"),
        None,
    )
    .await
    .unwrap();
    let a = logs(&c, &name).await.len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b = logs(&c, &name).await.len();
    assert!(b > a, "the restarted container makes progress ({a} → {b})");
    remove(&c, &name).await;
}

#[tokio::test]
async fn exec_runs_with_the_containers_restrictions() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(), "hostname": "exechost",
            "command": ["sleep", "1000"], "start": true}),
    )
    .await;
    let r = exec(
        &c,
        &name,
        &["/bin/sh", "-c", r#"
            echo hostname=$(hostname)
            echo init=$(cat /proc/1/cmdline | tr '\0' ' ')
            for k in CapInh CapEff CapAmb NoNewPrivs Seccomp; do echo $k=$(grep "^$k:" /proc/self/status | cut -f2); done
            echo cgroup=$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ' ')
            mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=refused
            echo netdevs=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
            exit 7"#],
    )
    .await;
    assert_eq!(r.exit_code, 7, "{r:?}");
    let f = facts(&r.stdout);
    assert_eq!(f["hostname"], "exechost");
    assert_eq!(f["init"], "sleep 1000", "same pid namespace");
    assert_eq!(f["CapEff"], DOCKER_CAPS_HEX);
    assert_eq!(f["CapInh"], "0000000000000000");
    assert_eq!(f["CapAmb"], "0000000000000000");
    assert_eq!(f["NoNewPrivs"], "1");
    assert_eq!(f["Seccomp"], "2");
    assert_eq!(
        f["cgroup"], "/",
        "in the container's cgroup (and its cgroup namespace)"
    );
    assert_eq!(f["mount"], "refused");
    assert_own_netns(&f["netdevs"]);
    remove(&c, &name).await;
}

#[tokio::test]
async fn daemon_crash_keeps_containers_and_restart_reattaches() {
    let mut daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let long = tests::unique("long");
    let short = tests::unique("short");
    let orphan = tests::unique("orphan");
    let l = create(
        &c,
        serde_json::json!({"name": long, "rootfs": rootfs.path(),
        "command": ["/bin/sh", "-c", "while true; do echo tick; sleep 0.2; done"], "start": true}),
    )
    .await;
    create(
        &c,
        serde_json::json!({"name": short, "rootfs": rootfs.path(),
        "command": ["/bin/sh", "-c", "sleep 1; exit 3"], "start": true}),
    )
    .await;
    let o = create(
        &c,
        serde_json::json!({"name": orphan, "rootfs": rootfs.path(),
        "command": ["sleep", "1000"], "start": true}),
    )
    .await;
    let phoenix = tests::unique("phoenix");
    let ph = create(
        &c,
        serde_json::json!({"name": phoenix, "rootfs": rootfs.path(), "restart": "always",
        "command": ["sleep", "1000"], "start": true}),
    )
    .await;
    let long_pid = l.pid.unwrap();

    daemon.kill9();
    // The orphan loses its monitor and its process while the daemon is down (a host crash for it).
    let state: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            daemon
                .state
                .path()
                .join("state/containers")
                .join(&o.id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ph_state: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            daemon
                .state
                .path()
                .join("state/containers")
                .join(&ph.id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for st in [&state, &ph_state] {
        for p in ["shim_pid", "init_pid"] {
            let pid = st[p].as_i64().unwrap() as i32;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
    }
    // The short one exits while the daemon is down (its monitor records it).
    let short_dir = fs::read_dir(daemon.state.path().join("state/containers"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            fs::read_to_string(p.join("config.json"))
                .map(|c| c.contains(&format!("\"name\": \"{short}\"")))
                .unwrap_or(false)
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(short_dir.join("state.json"))
        .unwrap_or_default()
        .contains("\"exited\"")
    {
        assert!(Instant::now() < deadline, "short container did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pid_alive(long_pid), "the container outlives the daemon");
    let before = fs::metadata(
        daemon
            .state
            .path()
            .join("state/containers")
            .join(&l.id)
            .join("console.log"),
    )
    .unwrap()
    .len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = fs::metadata(
        daemon
            .state
            .path()
            .join("state/containers")
            .join(&l.id)
            .join("console.log"),
    )
    .unwrap()
    .len();
    assert!(
        after > before,
        "the monitor keeps draining output while the daemon is down"
    );

    daemon.restart();
    let c = daemon.unix_client();
    let l2 = get(&c, &long).await;
    assert_eq!(l2.status, "running");
    assert_eq!(l2.pid, Some(long_pid), "re-attached to the same process");
    let s2 = get(&c, &short).await;
    assert_eq!(s2.status, "exited");
    assert_eq!(
        s2.exit_code,
        Some(3),
        "exit during the outage recorded with its code"
    );
    let o2 = get(&c, &orphan).await;
    assert_eq!(
        o2.status, "exited",
        "running with no process becomes exited"
    );
    let p2 = get(&c, &phoenix).await;
    assert_eq!(
        p2.status, "running",
        "the restart policy is applied to a container lost with its monitor"
    );
    assert_ne!(p2.pid, ph.pid);
    // The re-attached container is fully manageable.
    let st: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{long}/stop"),
        Some(serde_json::json!({"timeout": 5})),
    )
    .await
    .unwrap();
    assert_eq!(st.status, "exited");
    assert!(!pid_alive(long_pid));
    for n in [&long, &short, &orphan, &phoenix] {
        remove(&c, n).await;
    }
}

#[tokio::test]
async fn remove_leaves_nothing_behind() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let vol = TempDir::new("corral-vol");
    let name = tests::unique("ct");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "team": "cleanup", "rootfs": rootfs.path(),
        "mounts": [{"type": "bind", "source": vol.path(), "destination": "/vol"},
                   {"type": "tmpfs", "destination": "/scratch"}],
        "command": ["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"], "start": true}),
    )
    .await;
    let dir = daemon.state.path().join("state/containers").join(&ct.id);
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let shim = state["shim_pid"].as_i64().unwrap() as i32;
    let init = ct.pid.unwrap();
    let r = exec(&c, &name, &["true"]).await;
    assert_eq!(r.exit_code, 0);
    let cgroup_dirs: Vec<PathBuf> = cgroup_mounts()
        .iter()
        .map(|m| m.join(&daemon.cgroup_root).join("cleanup").join(&name))
        .collect();
    assert!(
        cgroup_dirs.iter().any(|d| d.is_dir()),
        "cgroup exists while running"
    );
    // Processes in the container, seen from the host.
    let procs: Vec<i32> = cgroup_dirs
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    assert!(procs.len() >= 3, "init and two sleeps: {procs:?}");

    remove(&c, &name).await;
    for d in &cgroup_dirs {
        assert!(!d.exists(), "cgroup {} removed", d.display());
    }
    assert!(
        !dir.exists(),
        "container dir (upper layer, logs, state) removed"
    );
    assert!(
        !pid_alive(shim) && !pid_alive(init),
        "monitor and init gone"
    );
    for p in procs {
        assert!(!pid_alive(p), "container process {p} gone");
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&ct.id),
        "no mount of the container is left on the host"
    );
    let err = call::<wire::Container>(&c, Method::GET, &format!("/api/v1/containers/{name}"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Api { status, .. } if status.as_u16() == 404));
}

#[tokio::test]
async fn restart_policy_on_failure() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(), "restart": "on-failure:2",
        "command": ["/bin/sh", "-c", "echo run; exit 4"], "start": true}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ct = get(&c, &name).await;
        if ct.status == "exited" && ct.restart_count == 2 {
            assert_eq!(ct.exit_code, Some(4));
            break;
        }
        assert!(Instant::now() < deadline, "{ct:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        logs(&c, &name).await.matches("run").count(),
        3,
        "first run and two restarts"
    );
    remove(&c, &name).await;
}

#[tokio::test]
async fn cli_run_streams_output_and_exits_with_the_code() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let rootfs = Rootfs::new();
    let host = format!("unix://{}", daemon.socket.display());
    let out = std::process::Command::new(tests::corral_bin())
        .args([
            "--host",
            &host,
            "run",
            "--rm",
            "--name",
            "clirun",
            "--hostname",
            "clibox",
            "-e",
            "A=b",
            "--pids",
            "50",
            "--rootfs",
        ])
        .arg(rootfs.path())
        .args(["sh", "-c", "echo hello $A from $(hostname); exit 5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello b from clibox\n"
    );
    let ps = std::process::Command::new(tests::corral_bin())
        .args(["--host", &host, "ps", "-a"])
        .output()
        .unwrap();
    assert!(ps.status.success());
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("clirun"),
        "--rm removed it"
    );
    // Detached, exec and logs through the CLI.
    let d = std::process::Command::new(tests::corral_bin())
        .args(["--host", &host, "run", "-d", "--name", "clibg", "--rootfs"])
        .arg(rootfs.path())
        .args(["sh", "-c", "echo started; sleep 1000"])
        .output()
        .unwrap();
    assert!(d.status.success(), "{d:?}");
    let e = std::process::Command::new(tests::corral_bin())
        .args([
            "--host",
            &host,
            "exec",
            "clibg",
            "sh",
            "-c",
            "echo inside; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&e.stdout), "inside\n");
    let l = std::process::Command::new(tests::corral_bin())
        .args(["--host", &host, "logs", "clibg"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&l.stdout), "started\n");
    let rm = std::process::Command::new(tests::corral_bin())
        .args(["--host", &host, "rm", "-f", "clibg"])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{rm:?}");
}

#[tokio::test]
async fn monitor_runs_from_a_sealed_copy_and_our_binary_stays_unwritable() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
        "command": ["sleep", "1000"], "start": true}),
    )
    .await;
    let dir = daemon.state.path().join("state/containers").join(&ct.id);
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let shim = state["shim_pid"].as_i64().unwrap();
    let exe = fs::read_link(format!("/proc/{shim}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:"),
        "monitor runs from a memfd: {}",
        exe.display()
    );
    // The monitor holds only stdio, its log, the container's output pipes and its attach
    // socket.
    let mut fds = Vec::new();
    for e in fs::read_dir(format!("/proc/{shim}/fd")).unwrap().flatten() {
        fds.push(fs::read_link(e.path()).unwrap().display().to_string());
    }
    assert!(fds.len() <= 7, "{fds:?}");
    let unix = fs::read_to_string(format!("/proc/{shim}/net/unix")).unwrap_or_default();
    let attach_socket = |f: &str| {
        f.strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|inode| {
                unix.lines().any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.get(6) == Some(&inode) && l.ends_with("/attach.sock")
                })
            })
    };
    for f in &fds {
        assert!(
            f == "/dev/null"
                || f.starts_with("pipe:")
                || f.ends_with("shim.log")
                || f.ends_with("console.log")
                || attach_socket(f),
            "unexpected fd in the monitor: {f} ({fds:?})"
        );
    }
    // Through /proc/PID/exe nobody (not even root) can change the code the monitor runs.
    let w = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{shim}/exe"));
    match w {
        Err(_) => {}
        Ok(mut f) => {
            use std::io::Write;
            assert!(
                f.write_all(b"\x7fELF-overwritten").is_err(),
                "sealed memfd refuses writes"
            );
        }
    }
    // The container sees no process of ours and no path to the corral binary.
    let r = exec(
        &c,
        &name,
        &[
            "/bin/sh",
            "-c",
            "for p in /proc/[0-9]*; do readlink $p/exe; done",
        ],
    )
    .await;
    assert!(!r.stdout.contains("corral"), "{r:?}");
    remove(&c, &name).await;
}

#[tokio::test]
async fn kill_signal_restart_and_detached_auto_remove() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("ct");
    let ct = create(&c, serde_json::json!({"name": name, "rootfs": rootfs.path(),
        "command": ["/bin/sh", "-c", "trap 'echo got usr1; exit 9' USR1; echo ready; while true; do sleep 0.05; done"],
        "start": true})).await;
    let first_pid = ct.pid.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs(&c, &name).await.contains("ready") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/kill"),
        Some(serde_json::json!({"signal": "USR1"})),
    )
    .await
    .unwrap();
    let done = wait_exited(&c, &name, Duration::from_secs(10)).await;
    assert_eq!(
        done.exit_code,
        Some(9),
        "the signal reached the container's PID 1"
    );
    assert!(logs(&c, &name).await.contains("got usr1"));
    // restart: a new init.
    let again: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/restart"),
        Some(serde_json::json!({"timeout": 1})),
    )
    .await
    .unwrap();
    assert_eq!(again.status, "running");
    assert_ne!(again.pid, Some(first_pid));
    // stop escalates to SIGKILL when PID 1 ignores SIGTERM (a shell without a handler does).
    let t = Instant::now();
    let st: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/stop"),
        Some(serde_json::json!({"timeout": 1})),
    )
    .await
    .unwrap();
    assert_eq!(st.status, "exited");
    assert_eq!(st.exit_code, Some(137), "SIGKILL after the timeout");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited for the timeout first"
    );
    remove(&c, &name).await;

    // A detached --rm container disappears by itself once it exits.
    let auto = tests::unique("auto");
    create(
        &c,
        serde_json::json!({"name": auto, "rootfs": rootfs.path(), "auto_remove": true,
        "command": ["true"], "start": true}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call::<wire::Container>(&c, Method::GET, &format!("/api/v1/containers/{auto}"), None)
            .await
        {
            Err(ClientError::Api { status, .. }) if status.as_u16() == 404 => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "auto-remove did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rootfs_symlinks_cannot_redirect_mounts_to_the_host() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    // /data -> /etc (absolute): resolved inside the rootfs, never on the host.
    let rootfs = Rootfs::new();
    std::os::unix::fs::symlink("/etc", rootfs.path().join("data")).unwrap();
    let vol = TempDir::new("corral-vol");
    fs::write(vol.path().join("marker"), "vol\n").unwrap();
    let (code, out) = run_script(
        &c,
        &rootfs,
        serde_json::json!({"mounts": [{"type": "bind", "source": vol.path(), "destination": "/data", "readonly": true}]}),
        "cat /etc/marker",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "vol\n", "the mount landed on the container's /etc");
    assert!(!Path::new("/etc/marker").exists());
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains(&vol.path().display().to_string()));

    // A rootfs whose /proc is a symlink is refused.
    let bad = Rootfs::new();
    fs::remove_dir(bad.path().join("proc")).unwrap();
    std::os::unix::fs::symlink("/etc", bad.path().join("proc")).unwrap();
    let err = call::<wire::Container>(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({"name": tests::unique("bad"), "rootfs": bad.path(), "command": ["true"], "start": true})),
    )
    .await
    .unwrap_err();
    match err {
        ClientError::Api {
            status, message, ..
        } => {
            assert_eq!(status.as_u16(), 400);
            assert!(message.contains("/proc is not a directory"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let list: Vec<wire::Container> = call(&c, Method::GET, "/api/v1/containers?all=true", None)
        .await
        .unwrap();
    for ct in list {
        remove(&c, &ct.name).await;
    }
}

/// A container's init and an exec'd command start as a program expects: no signal ignored, none
/// blocked. (The monitor's Rust runtime ignores SIGPIPE, and an ignored signal survives exec:
/// `yes | head` in such a container never ends by SIGPIPE.)
#[tokio::test]
async fn init_and_exec_start_with_default_signals() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("sig");
    create(
        &c,
        serde_json::json!({
            "name": name,
            "rootfs": rootfs.path(),
            "command": ["/bin/sleep", "30"],
            "start": true,
        }),
    )
    .await;
    let out = exec(
        &c,
        &name,
        &[
            "/bin/sh",
            "-c",
            "grep -E '^Sig(Ign|Blk)' /proc/1/status | tr -d '\\t' | tr : =",
        ],
    )
    .await;
    let mut f = facts(&out.stdout);
    let own = exec(&c, &name, &["/bin/cat", "/proc/self/status"]).await;
    remove(&c, &name).await;
    assert_eq!(
        f.remove("SigIgn").as_deref(),
        Some("0000000000000000"),
        "init: {out:?}"
    );
    assert_eq!(
        f.remove("SigBlk").as_deref(),
        Some("0000000000000000"),
        "init: {out:?}"
    );
    let own: std::collections::BTreeMap<_, _> = own
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    assert_eq!(own["SigIgn"], "0000000000000000", "exec'd command");
    assert_eq!(own["SigBlk"], "0000000000000000", "exec'd command");
}

/// A KILL of a paused container answers with its exit every time, also when the container
/// exits and releases its cgroup (`runtime::watch`) while the kill still thaws it. (Once, in
/// a loaded CI run, such a kill answered 500; a thaw finding the group gone is the race
/// found in the code; it did not reproduce here in 160 tries under load.)
#[tokio::test]
async fn killing_paused_containers_answers_every_time() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    for i in 0..12 {
        let name = tests::unique("pk");
        create(
            &c,
            serde_json::json!({"name": name, "rootfs": rootfs.path(),
                "command": ["/bin/sh", "-c", "sleep 999 & wait"], "start": true}),
        )
        .await;
        assert_eq!(action(&c, &name, "freeze").await.status, "paused");
        let killed = action(&c, &name, "kill").await;
        assert_eq!(killed.status, "exited", "kill #{i}: {killed:?}");
        remove(&c, &name).await;
    }
}
