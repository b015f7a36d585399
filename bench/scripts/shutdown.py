#!/usr/bin/env python3
"""Shutdown time of `federation serve` under load (issue 9, docs/benchmarks.md).

Starts the given binary against a throwaway database and its own nats-server,
loads it for 10 s (raw-NATS heartbeat floods from two publishers for 5,000
auto-registered hubs, 40 watch connections, 4 REST readers), sends SIGTERM and
times until the process exits. With `lock`, 200 hubs are registered and the
projects table is held in ACCESS EXCLUSIVE mode 2 s before SIGTERM, so the
heartbeat flusher hangs: the case the shutdown deadline exists for.

    bench/scripts/shutdown.py BIN HTTP_PORT NATS_PORT DBNAME [lock]
"""
import os, signal, socket, subprocess, sys, tempfile, threading, time, json, urllib.request
WORK = tempfile.mkdtemp(prefix="federation-shutdown-")
BIN = sys.argv[1]; PORT = int(sys.argv[2]); NPORT = int(sys.argv[3]); DB = sys.argv[4]
LOCK = len(sys.argv) > 5 and sys.argv[5] == "lock"
subprocess.run(["psql", "postgres://postgres@127.0.0.1:5432/postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"], check=True)
subprocess.run(["psql", "postgres://postgres@127.0.0.1:5432/postgres", "-qc", f"CREATE DATABASE {DB}"], check=True)
nats = subprocess.Popen(["nats-server", "-p", str(NPORT), "-js", "-sd", f"{WORK}/js{NPORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1)
KEY = "admin-key-0123456789abcdef"
env = dict(PATH=os.environ["PATH"], FEDERATION_API_KEYS=KEY, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
           NATS_URL=f"nats://127.0.0.1:{NPORT}", FEDERATION_PORT=str(PORT), FEDERATION__SERVER__HOST="127.0.0.1",
           FEDERATION__HEARTBEAT__AUTO_REGISTER="true", LOG_LEVEL="info", FEDERATION__CATALOG__PROJECTS_FILE="null")
env.pop("FEDERATION__CATALOG__PROJECTS_FILE")
log = open(f"{WORK}/{DB}.log", "w")
svc = subprocess.Popen([BIN, "serve"], env=env, stdout=log, stderr=log, cwd="/tmp")
base = f"http://127.0.0.1:{PORT}"
for _ in range(300):
    try:
        if urllib.request.urlopen(base + "/ready", timeout=1).status == 200: break
    except Exception: pass
    time.sleep(0.2)
else:
    print("not ready"); svc.kill(); nats.kill(); sys.exit(1)
stop = False
NH = 5000
if LOCK:
    NH = 200
    for i in range(NH):
        body = json.dumps({"project_slug": f"hub-{i}", "name": f"Hub {i}", "hub_url": f"http://hub-{i}.example:9001", "mesh_namespace": f"hub.hub-{i}", "tags": [], "allow_fanout": []}).encode()
        r = urllib.request.Request(base + "/api/fed/projects", data=body, method="POST", headers={"X-API-Key": KEY, "content-type": "application/json"})
        urllib.request.urlopen(r, timeout=5).read()
def pub():
    s = socket.create_connection(("127.0.0.1", NPORT)); s.recv(4096)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    i = 0
    while not stop:
        buf = []
        for _ in range(500):
            slug = f"hub-{i % NH}"; i += 1
            p = json.dumps({"project_slug": slug, "status": "online"}).encode()
            buf.append(b"PUB hub.presence.%s %d\r\n%s\r\n" % (slug.encode(), len(p), p))
        try: s.sendall(b"".join(buf))
        except Exception: return
        time.sleep(0.01)
def watch():
    try:
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(f"GET /api/fed/watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nX-API-Key: {KEY}\r\n\r\n".encode())
        while not stop and s.recv(65536): pass
    except Exception: pass
def rest():
    while not stop:
        try:
            r = urllib.request.Request(base + "/api/fed/projects", headers={"X-API-Key": KEY, "Authorization": f"Bearer {KEY}"})
            urllib.request.urlopen(r, timeout=5).read()
        except Exception: time.sleep(0.05)
ts = [threading.Thread(target=pub, daemon=True) for _ in range(2)] + \
     [threading.Thread(target=watch, daemon=True) for _ in range(40)] + \
     [threading.Thread(target=rest, daemon=True) for _ in range(4)]
for t in ts: t.start()
time.sleep(10)
if LOCK:
    # Hold the projects table: the flusher's next statement waits on it.
    locker = subprocess.Popen(["psql", f"postgres://postgres@127.0.0.1:5432/{DB}", "-qc", "BEGIN; LOCK TABLE projects IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
t0 = time.monotonic()
svc.send_signal(signal.SIGTERM)
try:
    rc = svc.wait(timeout=90)
except subprocess.TimeoutExpired:
    rc = "still running after 90s (killed)"; svc.kill(); svc.wait()
if LOCK: locker.kill()
dt = time.monotonic() - t0
stop = True
print(f"{DB}: exit {rc} after SIGTERM in {dt:.2f}s (log: {WORK}/{DB}.log)")
nats.kill(); nats.wait()
