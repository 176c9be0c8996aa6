#!/usr/bin/env python3
"""Peak memory of the service while it erases a large account (issue #8).

    eval "$(emulator/start.sh)"
    python3 scripts/erasure-memory.py target/debug/funnelflow 100000

Seeds N analyses under users/mem straight into the emulator (REST :commit, 500
writes each), starts the given funnelflow binary on a fresh project, provisions
the user, then DELETE /v1/me, and prints the process's VmRSS / VmHWM before and
after and how long the erasure took. The project is wiped afterwards.
"""
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

HOST = os.environ["FIRESTORE_EMULATOR_HOST"]
binary, n = sys.argv[1], int(sys.argv[2])
project = f"mem-{uuid.uuid4().hex[:8]}"
DOCS = f"projects/{project}/databases/(default)/documents"


def send(method, url, body=None, token="owner", timeout=900):
    req = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return json.load(urllib.request.urlopen(req, timeout=timeout))


def commit(i0):
    writes = [
        {"update": {"name": f"{DOCS}/users/mem/analyses/a{i:06d}", "fields": {"i": {"integerValue": str(i)}}}}
        for i in range(i0, min(i0 + 500, n))
    ]
    send("POST", f"http://{HOST}/v1/{DOCS}:commit", {"writes": writes})


t = time.time()
with cf.ThreadPoolExecutor(4) as ex:
    list(ex.map(commit, range(0, n, 500)))
print(f"seeded {n} documents in {time.time() - t:.1f} s", flush=True)

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
env = {
    "PATH": os.environ["PATH"], "RUST_LOG": "warn", "FIRESTORE_EMULATOR_HOST": HOST,
    "GOOGLE_CLOUD_PROJECT": project, "FUNNELFLOW_AUTH": "dev", "PORT": str(port),
    "FUNNELFLOW_HOST": "127.0.0.1",
}
token = subprocess.check_output(
    [binary, "dev-token", "--uid", "mem"], env={**env, "FUNNELFLOW_STORE": "embedded"}
).decode().strip()
proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"


def status(key):
    with open(f"/proc/{proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


try:
    while True:
        try:
            urllib.request.urlopen(base + "/readyz")
            break
        except OSError:
            time.sleep(0.05)
    send("GET", base + "/v1/me", token=token)
    print(f"before: VmRSS {status('VmRSS')} kB, VmHWM {status('VmHWM')} kB", flush=True)
    t = time.time()
    try:
        answer = send("DELETE", base + "/v1/me", token=token)
    except urllib.error.HTTPError as e:
        answer = f"HTTP {e.code}"
    print(f"erase answered after {time.time() - t:.1f} s: {answer}")
    print(f"after: VmRSS {status('VmRSS')} kB, VmHWM {status('VmHWM')} kB", flush=True)
finally:
    proc.kill()
    proc.wait()
    urllib.request.urlopen(urllib.request.Request(
        f"http://{HOST}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE"))
