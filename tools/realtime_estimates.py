#!/usr/bin/env python3
"""Measures the wait estimates of a running server from outside, in real time.

Drives a compressed office day (config/compressed-day.toml: services of seconds) through the HTTP
API: residents arrive as a Poisson process, four counter "clerks" call, start and complete with
lognormal service times; every ticket's `estimated_wait_s` from the issue reply is compared with
the time until it was first called. Baselines computed by this driver from what it can see at the
same moment: ql (place in line x mean counter time so far / counters serving the queue), les (the
wait of the ticket last called from the queue) and hol (how long the head of the line has waited).

    cargo build --release -p madoguchi-server
    python3 tools/realtime_estimates.py [--seconds 600] [--rate 0.36] [--seed 1]

Standard library only. Starts the release binary on a free port with a fresh data directory.
"""

import argparse
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = __file__.rsplit("/tools/", 1)[0]
SERVICE_S = {"tennyu": 9.0, "kokuho": 4.8, "shoumei": 3.0}
PLANS = [(["tennyu"], 0.35), (["tennyu", "kokuho"], 0.25), (["kokuho"], 0.15), (["shoumei"], 0.25)]
COUNTERS = {"1": ["onestop"], "2": ["onestop"], "3": ["certificates", "onestop"], "4": ["onestop", "certificates"]}


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, token, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            return e.code, None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=float, default=0.36, help="arrivals per second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default=f"{ROOT}/target/release/madoguchi")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    port = free_port()
    data = tempfile.mkdtemp(prefix="madoguchi-rt-")
    server = subprocess.Popen(
        [args.binary, "serve", "--config", f"{ROOT}/config/compressed-day.toml",
         "--data", data, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = Api(f"http://127.0.0.1:{port}")
    for _ in range(200):
        try:
            if api.call("GET", "/readyz", "x")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)

    lock = threading.Lock()
    tickets = {}  # id -> dict(issued, queue, estimate, ql, les, hol, called)
    last_wait = {}  # queue -> wait of the ticket last called from it
    occupancy = []  # observed counter times (call -> complete)
    stop = threading.Event()

    def clerk(cid):
        crng = random.Random(args.seed * 100 + int(cid))
        while not stop.is_set():
            status, reply = api.call("POST", f"/api/v1/sites/fast/counters/{cid}/call-next", "demo-counter", {})
            if status != 200:
                time.sleep(0.3)
                continue
            called = time.monotonic()
            t = reply["ticket"]
            with lock:
                mine = tickets.get(t["id"])
                if mine and mine["called"] is None:
                    mine["called"] = called
                    last_wait[mine["queue"]] = called - mine["issued"]
            time.sleep(crng.uniform(0.3, 1.0))
            api.call("POST", f"/api/v1/sites/fast/counters/{cid}/start", "demo-counter", {})
            service = sum(crng.lognormvariate(math.log(SERVICE_S[p]) - 0.08, 0.4) for p in t["procedures"])
            time.sleep(service)
            api.call("POST", f"/api/v1/sites/fast/counters/{cid}/complete", "demo-counter", {})
            with lock:
                occupancy.append(time.monotonic() - called)
            time.sleep(crng.uniform(0.1, 0.5))

    threads = [threading.Thread(target=clerk, args=(c,), daemon=True) for c in COUNTERS]
    for th in threads:
        th.start()
    start = time.monotonic()
    next_at = start
    while next_at - start < args.seconds:
        next_at += rng.expovariate(args.rate)
        time.sleep(max(0.0, next_at - time.monotonic()))
        plan = rng.choices([p for p, _ in PLANS], [w for _, w in PLANS])[0]
        status, board = api.call("GET", "/api/v1/sites/fast/board", "demo-floor")
        status, reply = api.call("POST", "/api/v1/sites/fast/tickets", "demo-dispenser", {"procedures": plan})
        if status != 201:
            continue
        now = time.monotonic()
        t = reply["ticket"]
        q = t["queue"]
        with lock:
            mean = sum(occupancy) / len(occupancy) if occupancy else 8.0
            servers = sum(1 / len(qs) for qs in COUNTERS.values() if q in qs)
            head = next((x for x in board["queues"] if x["id"] == q), None)
            hol = 0.0
            if head and head.get("oldest_since"):
                # The server's clock and ours differ by an offset; the board's own oldest ticket age.
                oldest = [x for x in tickets.values() if x["queue"] == q and x["called"] is None]
                hol = now - min(x["issued"] for x in oldest) if oldest else 0.0
            tickets[t["id"]] = {
                "issued": now, "queue": q, "estimate": t["estimated_wait_s"], "called": None,
                "ql": t["position"] * mean / servers, "les": last_wait.get(q, 0.0), "hol": hol,
            }
        print(f"\r{int(now - start)} s, {len(tickets)} tickets", end="", file=sys.stderr)
    # Let the line empty, then stop.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with lock:
            if all(x["called"] is not None for x in tickets.values()):
                break
        time.sleep(0.5)
    stop.set()
    server.terminate()
    server.wait(timeout=20)
    print(file=sys.stderr)

    done = [x for x in tickets.values() if x["called"] is not None]
    waits = [x["called"] - x["issued"] for x in done]
    report = {"tickets": len(done), "mean_wait_s": sum(waits) / max(1, len(waits)), "predictors": {}}
    for name in ["madoguchi", "ql", "les", "hol"]:
        key = "estimate" if name == "madoguchi" else name
        errors = [x[key] - (x["called"] - x["issued"]) for x in done]
        abs_e = sorted(abs(e) for e in errors)
        report["predictors"][name] = {
            "mae_s": sum(abs_e) / max(1, len(abs_e)),
            "p90_abs_s": abs_e[int(len(abs_e) * 0.9)] if abs_e else 0.0,
            "bias_s": sum(errors) / max(1, len(errors)),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
