#!/usr/bin/env python3
"""Schemathesis against a real Corral daemon, driven by its own OpenAPI document.

Usage (from the workspace root, after `cargo build -p backend`):

    python3 tests/schemathesis/run.py [--corral target/debug/corral] [--max-examples 25]

Installs schemathesis with pip when `st` is missing, starts `corral serve` on a free loopback
port with a temporary state directory, completes the first-run setup, creates an admin API
token, saves /api/v1/openapi.json and runs `st run --checks all` with a bounded number of
examples per operation (well under two minutes). Exits with schemathesis' status; the daemon
and the temporary directory are removed in every case. Python standard library only.
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
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if not os.path.isfile(args.corral):
        sys.exit(f"{args.corral} is missing: build it with `cargo build -p backend`")
    st = ensure_schemathesis()

    tmp = tempfile.mkdtemp(prefix="corral-schemathesis-")
    port = free_port()
    log = open(os.path.join(tmp, "daemon.log"), "w")
    daemon = subprocess.Popen(
        [args.corral, "serve", "--listen", f"127.0.0.1:{port}", "--socket", os.path.join(tmp, "run/corral.sock"),
         "--state-dir", os.path.join(tmp, "state"), "--cgroup-root", f"corral-st-{os.getpid()}"],
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

        cmd = [st, "run", schema_path, "--url", f"http://127.0.0.1:{port}",
               "--header", f"Authorization: Bearer {token}",
               # The CSRF custom header the CLI sends; without it login/setup are 403 by design.
               "--header", "X-Corral-Client: schemathesis",
               "--checks", "all", "--max-examples", str(args.max_examples),
               "--workers", "1", "--no-color", "--generation-database", "none",
               "--request-timeout", "30", "--suppress-health-check", "too_slow"]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
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
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        if code != 0:
            kept = tempfile.mkdtemp(prefix="corral-schemathesis-log-")
            shutil.copy(log.name, kept)
            print("daemon log kept in", kept)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
