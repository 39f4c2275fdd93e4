#!/usr/bin/env python3
"""Schemathesis against a real Corral daemon, driven by its own OpenAPI document.

Usage (from the workspace root, after `cargo build -p backend`):

    python3 tests/schemathesis/run.py [--corral target/debug/corral] [--max-examples 25]
                                      [--seed N | --seed random]

Installs schemathesis with pip when `st` is missing, starts `corral serve` on a free loopback
port with a temporary state directory, completes the first-run setup, creates an admin API
token, saves /api/v1/openapi.json and runs `st run --checks all` with a bounded number of
examples per operation. The seed is fixed (`CORRAL_ST_SEED` or `--seed` change it): the CI gate
runs the same cases every time, and a failure found with `--seed random` is replayed with the
seed it prints. Exits with schemathesis' status; the daemon and the temporary directory
are removed in every case. Containers outlive their daemon by design, so before stopping it the
runner force-removes every container the run created (as root over the unix socket), and after
it kills whatever is left in the run's own cgroup subtree `corral-st-PID` and removes it.
Python standard library only.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ADMIN = "admin"
PASSWORD = "schemathesis admin password"
# Schemathesis may pick any small integer as /tokens/{id}: create decoys first so the token it
# authenticates with has an id it is unlikely to revoke.
DECOY_TOKENS = 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"x-corral-client": "schemathesis-runner"}
    h.update(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["content-type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), payload


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the daemon's unix socket: root there is admin without a token."""

    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def unix_request(sock, method, path):
    conn = UnixConnection(sock)
    conn.request(method, path, headers={"x-corral-client": "schemathesis-runner"})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, payload


def remove_containers(sock):
    """Force-removes every container the run managed to create: containers outlive the daemon."""
    try:
        status, body = unix_request(sock, "GET", "/api/v1/containers?all=true")
        if status != 200:
            print(f"cannot list containers for cleanup: {status} {body[:200]!r}", flush=True)
            return
        for c in json.loads(body):
            status, body = unix_request(sock, "DELETE", f"/api/v1/containers/{c['id']}?force=true")
            print(f"removed container {c['name']!r} ({c['status']}): {status}", flush=True)
    except (OSError, ValueError, KeyError) as e:
        print(f"container cleanup over the socket failed: {e}", flush=True)


def cgroup_mounts():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[:1] in (["cgroup"], ["cgroup2"]):
                yield pre.split()[4]


def reap_cgroup_root(name):
    """Last resort after the daemon stopped: kill what is left in this run's own cgroup subtree
    (`corral-st-PID`, used by nobody else) and remove its directories, deepest first."""
    for mount in cgroup_mounts():
        top = os.path.join(mount, name)
        if not os.path.isdir(top):
            continue
        dirs = [d for d, _, _ in os.walk(top)]
        for d in dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        print(f"killing leftover pid {pid} in {d}", flush=True)
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            except OSError:
                pass
        time.sleep(0.2)
        for d in sorted(dirs, key=len, reverse=True):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def ensure_schemathesis():
    st = shutil.which("st")
    if st:
        return st
    print("schemathesis missing: pip install schemathesis", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "schemathesis"], check=True)
    st = shutil.which("st")
    if not st:
        sys.exit("pip installed schemathesis but `st` is not on PATH")
    return st


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--corral", default=os.environ.get("CORRAL_BIN", os.path.join(root, "target/debug/corral")))
    ap.add_argument("--max-examples", type=int, default=25)
    ap.add_argument("--seed", default=os.environ.get("CORRAL_ST_SEED", "20261129"),
                    help="an integer, or `random` for a fresh seed")
    args = ap.parse_args()
    if not os.path.isfile(args.corral):
        sys.exit(f"{args.corral} is missing: build it with `cargo build -p backend`")
    st = ensure_schemathesis()

    tmp = tempfile.mkdtemp(prefix="corral-schemathesis-")
    port = free_port()
    sock = os.path.join(tmp, "run/corral.sock")
    cgroup_root = f"corral-st-{os.getpid()}"
    log = open(os.path.join(tmp, "daemon.log"), "w")
    daemon = subprocess.Popen(
        [args.corral, "serve", "--listen", f"127.0.0.1:{port}", "--socket", sock,
         "--state-dir", os.path.join(tmp, "state"), "--cgroup-root", cgroup_root],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    code = 1
    try:
        deadline = time.time() + 30
        while True:
            try:
                if request(port, "GET", "/api/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            if daemon.poll() is not None or time.time() > deadline:
                sys.exit("corral serve did not start; see " + log.name)
            time.sleep(0.05)
        with open(os.path.join(tmp, "state/setup-token")) as f:
            setup_token = f.read().strip()
        status, headers, body = request(port, "POST", "/api/v1/setup",
                                        {"token": setup_token, "name": ADMIN, "password": PASSWORD})
        assert status == 201, (status, body)
        cookie = headers["set-cookie"].split(";")[0]
        csrf = json.loads(body)["csrf_token"]
        session = {"cookie": cookie, "x-corral-csrf": csrf}
        for i in range(DECOY_TOKENS):
            status, _, body = request(port, "POST", "/api/v1/tokens", {"name": f"decoy-{i}"}, session)
            assert status == 201, (status, body)
        status, _, body = request(port, "POST", "/api/v1/tokens", {"name": "schemathesis"}, session)
        assert status == 201, (status, body)
        token = json.loads(body)["token"]
        status, _, schema = request(port, "GET", "/api/v1/openapi.json", headers={"authorization": f"Bearer {token}"})
        assert status == 200, status
        schema_path = os.path.join(tmp, "openapi.json")
        with open(schema_path, "wb") as f:
            f.write(schema)

        cmd = [st, "--config-file", os.path.join(here, "schemathesis.toml"), "run", schema_path, "--url", f"http://127.0.0.1:{port}",
               "--header", f"Authorization: Bearer {token}",
               # The CSRF custom header the CLI sends; without it login/setup are 403 by design.
               "--header", "X-Corral-Client: schemathesis",
               "--checks", "all", "--max-examples", str(args.max_examples),
               "--workers", "1", "--no-color", "--generation-database", "none",
               "--request-timeout", "30", "--suppress-health-check", "too_slow",
               # The event stream never ends by design: schemathesis reads a whole response
               # body and would wait out --request-timeout on every example. Its 401/403 and
               # framing are covered by tests/it/api/events.rs.
               "--exclude-path", "/api/v1/events",
               # The interactive routes speak WebSocket only (a plain GET is a 400 naming the
               # upgrade); an HTTP fuzzer cannot hold that conversation. Their refusals are
               # covered by tests/it/api/auth.rs, the sessions by kernel::container_term.
               "--exclude-operation-id", "containers_exec_ws",
               "--exclude-operation-id", "containers_attach_ws",
               # Where criu check fails (CI's kernel) every schema-valid restore gets the
               # documented 503 `checkpoint_unavailable`, which --checks all counts as a server
               # error. Its 400s, rights and the refusal are covered by
               # tests/it/kernel/checkpoint.rs on the host, the restore itself in the VM.
               "--exclude-operation-id", "containers_restore"]
        if args.seed != "random":
            cmd += ["--seed", str(int(args.seed))]
        print("running:", " ".join(c if not c.startswith("Authorization") else "Authorization: Bearer ***" for c in cmd), flush=True)
        started = time.time()
        code = subprocess.run(cmd, cwd=tmp).returncode
        print(f"schemathesis finished in {time.time() - started:.0f} s with status {code}", flush=True)
        with open(log.name) as f:
            panics = [line for line in f if "panicked" in line]
        if panics:
            print("the daemon panicked:\n" + "".join(panics), flush=True)
            code = code or 1
    finally:
        if daemon.poll() is None:
            remove_containers(sock)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        reap_cgroup_root(cgroup_root)
        if code != 0:
            kept = tempfile.mkdtemp(prefix="corral-schemathesis-log-")
            shutil.copy(log.name, kept)
            print("daemon log kept in", kept)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
