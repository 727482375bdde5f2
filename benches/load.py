#!/usr/bin/env python3
"""Load benchmark: Portico against a bare Pingora proxy and nginx, interleaved, one run.

    python3 benches/load.py [--rounds 5] [--duration 4] [--connections 16] [--rate 2000]

Everything runs on loopback. With two or more cores the proxy under test is pinned to core 0
and the load generator (wrk) and the origin to core 1, so proxy CPU per request is measured
without them. Targets, each measured once per round in the same order:

  direct      wrk -> origin (the echo upstream, `portico echo`)
  bare        Pingora 0.9.1 proxy with one static peer and no filters (examples/bare_proxy.rs)
  nginx       nginx reverse proxy with upstream keepalive (only when `nginx` is installed)
  portico-a   Portico, routing only (one route, static instance, access log off)
  portico-b   Portico with every request-path feature: registry-fed balancer with breakers
              (Redis registry), a local rate limit that never trips, KPIs, full metrics, access log
              to a file, tracing at 1% to a local OTLP/HTTP receiver
  portico-b-redis  the same with the rate limit in the Redis store (one EVALSHA per request)
  portico-b-cluster  (--cluster) portico-b-redis against a 3-master Redis Cluster
  portico-b-steal  (with --steal) the same on tokio's work-stealing runtime

Per target: requests/s (median and min-max), p50/p99 latency at saturation (median over
rounds), p50/p99 at a fixed offered rate (needs `oha`), proxy CPU microseconds per request
(utime+stime from /proc of the proxy's processes), peak RSS, and ratios against bare and nginx.
Needs: wrk (apt-get install wrk), redis-server for portico-b, optionally nginx and oha.
"""

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTICO = os.path.join(ROOT, "target", "release", "portico")
BARE = os.path.join(ROOT, "target", "release", "examples", "bare_proxy")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def pin(core):
    cores = os.cpu_count() or 1
    return ["taskset", "-c", str(core % cores)] if shutil.which("taskset") and cores > 1 else []


def pids_of(root_pid):
    """The process and its descendants (nginx master + worker)."""
    out = [root_pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == root_pid:
                    out.append(int(p))
            except OSError:
                pass
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def peak_rss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+)", f.read())
                total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


def wrk(url, duration, connections, headers=()):
    cmd = pin(1) + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {}
    for q in ("50", "99"):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        lat[q] = float(m.group(1)) * scale
    return rps, total, int(errors.group(1)) if errors else 0, lat


def oha(url, duration, rate, connections, headers=()):
    """p50/p99 in ms at a fixed offered rate, or None without oha."""
    if not shutil.which("oha"):
        return None
    cmd = pin(1) + ["oha", "-z", f"{duration}s", "-q", str(rate), "-c", str(connections),
                    "--no-tui", "--output-format", "json"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    try:
        pct = json.loads(out)["latencyPercentiles"]
        return {"50": pct["p50"] * 1e3, "99": pct["p99"] * 1e3}
    except (ValueError, KeyError, TypeError):
        return None


class Otlp(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def start(cmd, port, core, **kw):
    proc = subprocess.Popen(pin(core) + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    wait_port(port)
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=int, default=2000, help="offered rate for the fixed-rate run (oha)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--steal", action="store_true",
                    help="also run Portico b with server.work_stealing: true")
    ap.add_argument("--cluster", action="store_true",
                    help="also run Portico b against a 3-master Redis Cluster (registry and limit)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=ROOT, check=True)

    tmp = tempfile.mkdtemp(prefix="portico-bench-")
    procs = []
    targets = {}
    # Request headers a target needs (its credential), by target name.
    target_headers = {}
    try:
        origin = free_port()
        procs.append(start([PORTICO, "echo", "--listen", f"127.0.0.1:{origin}"], origin, 1))
        targets["direct"] = (None, origin)

        bare = free_port()
        p = start([BARE, f"127.0.0.1:{bare}", f"127.0.0.1:{origin}", "1"], bare, 0)
        procs.append(p)
        targets["bare"] = (p, bare)

        if shutil.which("nginx"):
            port = free_port()
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 1024; }}
http {{ access_log off; upstream o {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://o; proxy_http_version 1.1;
  proxy_set_header Connection ""; }} }} }}""")
            p = start(["nginx", "-c", conf, "-p", tmp], port, 0)
            procs.append(p)
            targets["nginx"] = (p, port)

        a_port, a_admin = free_port(), free_port()
        with open(os.path.join(tmp, "a.yaml"), "w") as f:
            f.write(f"""server: {{listen: ["127.0.0.1:{a_port}"], threads: 1, admin: {{listen: "127.0.0.1:{a_admin}"}}}}
access_log: {{enabled: false}}
routes: [{{name: api, service: origin}}]
services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}
""")
        p = start([PORTICO, "run", "-c", os.path.join(tmp, "a.yaml")], a_port, 0, env={**os.environ, "RUST_LOG": "error"})
        procs.append(p)
        targets["portico-a"] = (p, a_port)

        redis_port = None
        if shutil.which("redis-server"):
            redis_port = free_port()
            procs.append(start(["redis-server", "--port", str(redis_port), "--save", "", "--bind", "127.0.0.1"], redis_port, 1))
            reg = subprocess.Popen(pin(1) + [PORTICO, "register", "--redis", f"redis://127.0.0.1:{redis_port}/0",
                                   "--service", "origin", "--addr", f"127.0.0.1:{origin}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(reg)
        otlp_port = free_port()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", otlp_port), Otlp)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        cluster_section = None
        if args.cluster and redis_port:
            ports = [free_port() for _ in range(3)]
            for cp in ports:
                procs.append(start(["redis-server", "--port", str(cp), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--cluster-enabled", "yes",
                                    "--cluster-port", str(free_port()),
                                    "--cluster-config-file", os.path.join(tmp, f"nodes-{cp}.conf"),
                                    "--dir", tmp], cp, 1))
            subprocess.run(["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{cp}" for cp in ports]
                           + ["--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
            seeds = ", ".join(f'"redis://127.0.0.1:{cp}"' for cp in ports)
            cluster_section = f"redis: {{cluster: [{seeds}]}}\n"
            with open(os.path.join(tmp, "cluster.yaml"), "w") as f:
                f.write(cluster_section + "routes: [{name: api, service: origin}]\n"
                        "services: {origin: {discovery: redis}}\n")
            time.sleep(2)  # every node reports cluster_state:ok
            procs.append(subprocess.Popen(pin(1) + [PORTICO, "register", "--config", os.path.join(tmp, "cluster.yaml"),
                                          "--service", "origin", "--addr", f"127.0.0.1:{origin}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def portico_b(name, store="local", work_stealing=False, redis_section=None, auth=False):
            port, admin = free_port(), free_port()
            discovery = redis_section or (f'redis: {{url: "redis://127.0.0.1:{redis_port}/0"}}\n' if redis_port else "")
            service = ("{discovery: redis}" if redis_port else f'{{instances: ["127.0.0.1:{origin}"]}}')
            conf = os.path.join(tmp, f"{name}.yaml")
            # `auth: [keys]`: an API key looked up among 1,000 consumers on every request.
            auth_route = ", auth: [keys]" if auth else ""
            auth_section = ""
            if auth:
                consumers = "".join(f'\n  c{i}: {{api_keys: ["bench-consumer-key-{i:06}"]}}' for i in range(1000))
                auth_section = f"\nconsumers:{consumers}\nauth: {{keys: {{type: api_key}}}}"
                target_headers[name] = ["x-api-key: bench-consumer-key-000042"]
            with open(conf, "w") as f:
                f.write(f"""server: {{listen: ["127.0.0.1:{port}"], threads: 1, work_stealing: {str(work_stealing).lower()}, admin: {{listen: "127.0.0.1:{admin}"}}}}
{discovery}access_log: {{enabled: true, path: "{tmp}/{name}-access.log"}}
tracing: {{otlp_endpoint: "http://127.0.0.1:{otlp_port}/v1/traces", sample_ratio: 0.01}}
rate_limits: {{never: {{key: client_ip, limit: 1000000, per: 1s, store: {store}}}}}
routes: [{{name: api, service: origin, rate_limits: [never]{auth_route}}}]
services: {{origin: {service}}}{auth_section}
kpis:
  - {{name: reads, routes: [api], methods: [GET], status: 2xx}}
  - {{name: users, request_header: {{name: x-user-id}}}}
""")
            p = start([PORTICO, "run", "-c", conf], port, 0, env={**os.environ, "RUST_LOG": "error"})
            procs.append(p)
            targets[name] = (p, port)

        portico_b("portico-b")
        portico_b("portico-b-keys", auth=True)
        if args.steal:
            portico_b("portico-b-steal", work_stealing=True)
        if redis_port:
            portico_b("portico-b-redis", store="redis")
        if cluster_section:
            portico_b("portico-b-cluster", store="redis", redis_section=cluster_section)
        time.sleep(2)  # registry first sync, tracing provider up

        results = {name: {"rps": [], "cpu": [], "p50": [], "p99": [], "errors": 0} for name in targets}
        for rnd in range(args.rounds):
            for name, (proc, port) in targets.items():
                pids = pids_of(proc.pid) if proc else []
                c0 = cpu_seconds(pids)
                rps, total, errors, lat = wrk(f"http://127.0.0.1:{port}/", args.duration, args.connections,
                                              target_headers.get(name, ()))
                c1 = cpu_seconds(pids)
                r = results[name]
                r["rps"].append(rps)
                r["p50"].append(lat["50"])
                r["p99"].append(lat["99"])
                r["errors"] += errors
                if proc:
                    r["cpu"].append((c1 - c0) * 1e6 / max(total, 1))
                print(f"round {rnd + 1} {name:10} {rps:10.0f} req/s  p50 {lat['50']:.3f} ms  p99 {lat['99']:.3f} ms"
                      + (f"  {r['cpu'][-1]:.1f} us CPU/req" if proc else ""), flush=True)
        for name, (proc, port) in targets.items():
            fixed = oha(f"http://127.0.0.1:{port}/", args.duration, args.rate, args.connections,
                        target_headers.get(name, ()))
            results[name]["fixed"] = fixed
            results[name]["rss"] = peak_rss_kb(pids_of(proc.pid)) if proc else None

        med = lambda xs: statistics.median(xs) if xs else float("nan")
        base = {k: (med(results[k]["rps"]), med(results[k]["cpu"])) for k in ("bare", "nginx") if k in results}
        lines = [
            f"Load benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"{args.rounds} interleaved rounds of {args.duration}s, wrk -t1 -c{args.connections}, small JSON echo responses (~200-300 bytes of body)",
            "",
            "| target | req/s median (min–max) | p50 / p99 ms (saturation) | p50 / p99 ms @ "
            f"{args.rate}/s | CPU µs/req | peak RSS MB | vs bare (req/s, CPU) | vs nginx (req/s, CPU) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in results.items():
            rps, cpu = med(r["rps"]), med(r["cpu"])
            fixed = r.get("fixed")
            fixed_s = (f"{fixed.get('50', float('nan')):.2f} / {fixed.get('99', float('nan')):.2f}"
                       if fixed else "n/a (no oha)")
            ratios = []
            for b in ("bare", "nginx"):
                if b in base and r["cpu"]:
                    ratios.append(f"{rps / base[b][0]:.2f}x, {cpu / base[b][1]:.2f}x")
                elif b in base:
                    ratios.append(f"{rps / base[b][0]:.2f}x, –")
                else:
                    ratios.append("–")
            cpu_s = f"{cpu:.1f}" if r["cpu"] else "–"
            rss_s = f"{r['rss'] / 1024:.1f}" if r.get("rss") else "–"
            lines.append(
                f"| {name} | {rps:.0f} ({min(r['rps']):.0f}–{max(r['rps']):.0f}) "
                f"| {med(r['p50']):.2f} / {med(r['p99']):.2f} | {fixed_s} | {cpu_s} | {rss_s} "
                f"| {ratios[0]} | {ratios[1]} |")
            if r["errors"]:
                lines.append(f"|  ↳ {name}: {r['errors']} non-2xx responses | | | | | | | |")
        # Rounds are interleaved, so the ratio within each round cancels most of the drift of a
        # shared machine; their median is the figure the targets in issue 8 are checked against.
        def paired(name, base_name, key):
            xs, ys = results[name][key], results[base_name][key]
            return statistics.median(x / y for x, y in zip(xs, ys)) if xs and ys else float("nan")

        lines += ["", "Paired per-round ratios (median over rounds):", ""]
        for name, base_name in [("portico-a", "bare"), ("portico-b", "bare"), ("portico-b-keys", "portico-b"),
                                ("portico-b-steal", "bare"),
                                ("portico-b-redis", "portico-b"), ("portico-b-cluster", "portico-b"),
                                ("portico-b-cluster", "portico-b-redis"), ("portico-b", "nginx")]:
            if name in results and base_name in results:
                lines.append(f"- {name} / {base_name}: req/s {paired(name, base_name, 'rps'):.2f}x, "
                             f"CPU per request {paired(name, base_name, 'cpu'):.2f}x")
        report = "\n".join(lines)
        print("\n" + report)
        out = os.path.join(ROOT, "target", "bench-load.md")
        with open(out, "w") as f:
            f.write(report + "\n")
        print(f"\n(also written to {out})")
    finally:
        for p in reversed(procs):
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=5)
            except Exception:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
