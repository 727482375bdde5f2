#!/usr/bin/env python3
"""Load benchmark: Portico against a bare Pingora proxy and nginx, interleaved, one run.

    python3 benches/load.py [--rounds 5] [--duration 4] [--connections 16[,64,256...]]
                            [--workers 1|2] [--rate 2000] [--steal] [--cluster] [--no-h2]
                            [--nginx-keepalive 64] [--no-build]

Everything runs on loopback. Every target has an origin of its own (the echo upstream,
`portico echo`, the same binary for all), so connections one target churns (tens of thousands
in TIME_WAIT at high concurrency) neither hold the ephemeral ports another target needs nor
count among its upstream connections. Two modes:

  --workers 1  (default) every proxy under test runs one worker; with two or more cores it is
               pinned to core 0 and the load generator (wrk, h2load, oha), the origin and Redis
               to core 1, so proxy CPU per request is measured without them.
  --workers 2  every proxy runs two workers (Portico `server.threads: 2`, the bare proxy's
               thread argument 2, nginx `worker_processes 2`) and nothing is pinned: proxy, load
               generator and origin share the (two) cores, as on a small host.

`--connections` is a comma-separated list (default 16): every target is measured at each count,
one count after the other; for each count the rounds are interleaved (each round measures
every target once, in the order below). wrk runs with one thread (-t1) at every count.
HTTP/1.1 targets (wrk -t1 -cCONNS):

  direct      wrk -> origin
  bare        Pingora 0.9.1 proxy with one static peer and no filters (examples/bare_proxy.rs)
  nginx       nginx reverse proxy with upstream keepalive (only when `nginx` is installed):
              `keepalive 64` idle upstream connections per worker (--nginx-keepalive), access
              log off, nginx's defaults otherwise (keepalive_requests 1000 on both sides)
  portico-a   Portico, routing only (one route, static instance, access log off)
  portico-b   Portico with every request-path feature: registry-fed balancer with breakers
              (Redis registry), a local rate limit that never trips, KPIs, full metrics, access log
              to a file, tracing at 1% to a local OTLP/HTTP receiver
  portico-b-keys  portico-b with `auth: [keys]` over 1,000 consumers (wrk sends one key)
  portico-b-steal  (with --steal) portico-b on tokio's work-stealing runtime
  portico-b-redis  portico-b with the rate limit in the Redis store (concurrent decisions share
                   script calls)
  portico-b-cluster  (--cluster) portico-b-redis against a 3-master Redis Cluster

HTTP/2 targets (h2load -t1 -cCONNS -m 10, in the same rounds; only when `h2load` (apt-get
install nghttp2-client) and `openssl` are installed, and not with --no-h2); both proxies speak
HTTP/1.1 to the origin, and the TLS certificate is a self-signed one made for the run:

  nginx-h2       nginx, TLS listener with h2 (ALPN), upstream as `nginx`; keepalive_requests
                 raised for clients, as nginx ends an h2 connection after 1,000 requests and
                 h2load does not reconnect
  portico-a-h2   Portico a with a TLS listener (`server.tls`), h2 via ALPN
  portico-a-h2c  Portico a with `server.h2c: true` on its plain listener (prior knowledge)
  (the bare proxy example has no TLS listener, so it has no HTTP/2 row)

Per target and connection count: requests/s (median and min-max), latency at saturation (wrk:
p50/p99, median over rounds; h2load: mean/sd/max request time, median over rounds), p50/p99
at a fixed offered rate (HTTP/1.1 only, `oha`, or h2load's `--rps` when oha is absent), proxy CPU microseconds per request
(utime+stime from /proc of the proxy's processes), upstream connections opened during a run
(the origin's `GET /echo/stats` read directly before and after each run: median and max over
rounds; for `direct` that is wrk's own connections, -c plus the one wrk opens first to check
the address), peak RSS (reset before each connection count where the kernel allows it),
ratios against bare and nginx, and the paired per-round ratios for each connection count.
The report is also written to target/bench-load.md.
Needs: wrk (apt-get install wrk), redis-server for portico-b, optionally nginx, oha, h2load.
"""

import argparse
import http.client
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
# Concurrent streams per HTTP/2 connection (h2load -m).
H2_STREAMS = 10
# Whether `pin` pins at all: `--workers 2` turns it off (nothing pinned in that mode).
PINNED = True


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
    return ["taskset", "-c", str(core % cores)] if PINNED and shutil.which("taskset") and cores > 1 else []


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


def reset_peak_rss(pids):
    """Resets VmHWM to the current RSS (`5` > clear_refs, Linux 4.0+); False where refused."""
    ok = True
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def origin_stats(port):
    """The origin's (connections accepted, requests answered) since it started, read on its own
    port; this query's connection is counted among the connections."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/echo/stats")
        stats = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return stats["connections"], stats["requests"]


def to_ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url, duration, connections, headers=()):
    cmd = pin(1) + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    lat = {}
    for q in ("50", "99"):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out)
        lat[q] = to_ms(m.group(1), m.group(2))
    return rps, total, errors, lat


def h2load(url, duration, connections):
    """HTTP/2 with H2_STREAMS streams per connection: TLS (ALPN) for https://, prior knowledge
    for http://. Returns req/s and responses (as wrk counts them: whatever the status), failed
    requests (4xx/5xx responses and streams without one) and the request time {min, max, mean,
    sd} in ms."""
    cmd = pin(1) + ["h2load", "-t", "1", "-c", str(connections), "-m", str(H2_STREAMS),
                    "-D", str(duration), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout
    fin = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored", out)
    time_re = r"([\d.]+)(us|ms|s)\s+"
    t = re.search(r"time for request:\s+" + time_re * 4, out)
    if not (fin and req and t):
        raise RuntimeError(f"h2load {url}: unexpected output (exit {proc.returncode}):\n"
                           f"{out[-1500:]}\n{proc.stderr[-1500:]}")
    succeeded, failed, errored = (int(g) for g in req.groups())
    times = {k: to_ms(t.group(2 * i + 1), t.group(2 * i + 2)) for i, k in enumerate(("min", "max", "mean", "sd"))}
    # Like wrk's count: every response (h2load's "succeeded" is status < 400; its "failed"
    # adds 4xx/5xx responses to the streams that got none, "errored").
    return float(fin.group(1)), succeeded + failed - errored, failed, times


def fixed_rate(url, duration, rate, connections, headers=()):
    """p50/p99 in ms at a fixed offered rate over HTTP/1.1: oha when installed, else h2load's
    per-client --rps with its per-request log (h2load from nghttp2-client >= 1.40)."""
    if shutil.which("oha"):
        return oha(url, duration, rate, connections, headers)
    if shutil.which("h2load"):
        return h2load_fixed(url, duration, rate, connections, headers)
    return None


def oha(url, duration, rate, connections, headers=()):
    cmd = pin(1) + ["oha", "-z", f"{duration}s", "-q", str(rate), "-c", str(connections),
                    "--no-tui", "--output-format", "json"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
        pct = json.loads(out)["latencyPercentiles"]
        return {"50": pct["p50"] * 1e3, "99": pct["p99"] * 1e3, "tool": "oha"}
    except (ValueError, KeyError, TypeError, subprocess.TimeoutExpired):
        return None


def h2load_fixed(url, duration, rate, connections, headers=()):
    """Each of `connections` clients sends rate/connections requests per second on its own
    keep-alive connection (--h1); the latency is h2load's per-request log (microseconds from
    request start to the end of the response), so queueing behind a slow answer counts."""
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        cmd = pin(1) + ["h2load", "--h1", "-t", "1", "-c", str(connections), "-m", "1",
                        "--rps", f"{rate / connections:g}", "-D", str(duration),
                        "--log-file", log.name]
        for h in headers:
            cmd += ["-H", h]
        cmd.append(url)
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        except subprocess.TimeoutExpired:
            return None
        times = sorted(int(line.split("\t")[2]) for line in log if line.count("\t") >= 2)
    if len(times) < 100:
        return None
    at = lambda q: times[min(len(times) - 1, int(q * len(times)))] / 1e3
    return {"50": at(0.50), "99": at(0.99), "tool": "h2load"}


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


def nginx_conf(tmp, name, workers, origin, worker_connections, listen, tls=None, keepalive=64):
    """nginx proxying to the origin over HTTP/1.1 keepalive; `tls` = (cert, key) adds ssl + h2."""
    server = f"listen 127.0.0.1:{listen};"
    if tls:
        # nginx 1.25.1+ takes `http2 on;`, older ones (Debian 12: 1.22) `listen ... ssl http2;`.
        # keepalive_requests: nginx closes an HTTP/2 connection after 1,000 requests by default
        # and h2load does not reconnect, which would end the run early.
        tls_common = (f" ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};"
                      f" ssl_protocols TLSv1.2 TLSv1.3; keepalive_requests 1000000;")
        variants = [f"listen 127.0.0.1:{listen} ssl; http2 on;" + tls_common,
                    f"listen 127.0.0.1:{listen} ssl http2;" + tls_common]
    else:
        variants = [server]
    conf = os.path.join(tmp, f"{name}.conf")
    for server in variants:
        with open(conf, "w") as f:
            f.write(f"""worker_processes {workers}; daemon off; pid {tmp}/{name}.pid; error_log {tmp}/{name}.err;
events {{ worker_connections {worker_connections}; }}
http {{ access_log off; upstream o {{ server 127.0.0.1:{origin}; keepalive {keepalive}; }}
  server {{ {server} location / {{ proxy_pass http://o; proxy_http_version 1.1;
  proxy_set_header Connection ""; }} }} }}""")
        if len(variants) == 1:
            return conf
        test = subprocess.run(["nginx", "-t", "-c", conf, "-p", tmp], capture_output=True, text=True, timeout=30)
        if test.returncode == 0:
            return conf
    raise RuntimeError(f"nginx accepts no HTTP/2 TLS configuration: {test.stderr.strip()}")


def ratio(x, y):
    return x / y if y else float("nan")


def fmt_count(x):
    return f"{x:.1f}".rstrip("0").rstrip(".")


def main():
    global PINNED
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--connections", default="16",
                    help="comma-separated connection counts, each measured in turn (e.g. 16,64,256)")
    ap.add_argument("--workers", type=int, default=1, choices=(1, 2),
                    help="workers per proxy; 2: nothing is pinned to a core")
    ap.add_argument("--rate", type=int, default=2000, help="offered rate for the fixed-rate run (oha, or h2load --rps)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--steal", action="store_true",
                    help="also run Portico b with server.work_stealing: true")
    ap.add_argument("--cluster", action="store_true",
                    help="also run Portico b against a 3-master Redis Cluster (registry and limit)")
    ap.add_argument("--no-h2", action="store_true", help="skip the HTTP/2 rows (h2load)")
    ap.add_argument("--nginx-keepalive", type=int, default=64,
                    help="idle upstream connections each nginx worker keeps (`keepalive`); below the "
                         "connections in flight nginx closes and reopens upstream connections")
    args = ap.parse_args()
    try:
        conn_counts = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        sys.exit(f"--connections: comma-separated positive integers expected, got {args.connections!r}")
    if not conn_counts or min(conn_counts) < 1 or args.rounds < 1 or args.duration < 1:
        sys.exit("--connections, --rounds and --duration must be positive")
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    workers = args.workers
    PINNED = workers == 1
    pinned = bool(pin(0))
    h2 = not args.no_h2 and bool(shutil.which("h2load")) and bool(shutil.which("openssl"))
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=ROOT, check=True)

    tmp = tempfile.mkdtemp(prefix="portico-bench-")
    procs = []
    # name -> {"proc": the proxy (None for direct), "origin": its origin's port, "url",
    # "headers": what the target needs sent (its credential), "h2": measured with h2load
    # instead of wrk}; measured in this order.
    targets = {}

    def target(name, proc, origin, url, headers=(), is_h2=False):
        targets[name] = {"proc": proc, "origin": origin, "url": url, "headers": list(headers), "h2": is_h2}

    def new_origin():
        """Every target gets an origin of its own (the same `portico echo`): a proxy that churns
        upstream connections leaves tens of thousands of them in TIME_WAIT, and towards a shared
        origin port they would hold the ephemeral ports the next target needs, and its late
        (SYN-retransmitted) connects would be counted in the next target's run."""
        port = free_port()
        procs.append(start([PORTICO, "echo", "--listen", f"127.0.0.1:{port}"], port, 1))
        origin_stats(port)
        return port

    # Room for every client connection plus one upstream connection per request in flight.
    nginx_conns = max(1024, 4 * max(conn_counts))
    try:
        origin = new_origin()
        target("direct", None, origin, f"http://127.0.0.1:{origin}/")

        bare, origin = free_port(), new_origin()
        p = start([BARE, f"127.0.0.1:{bare}", f"127.0.0.1:{origin}", str(workers)], bare, 0)
        procs.append(p)
        target("bare", p, origin, f"http://127.0.0.1:{bare}/")

        if shutil.which("nginx"):
            port, origin = free_port(), new_origin()
            conf = nginx_conf(tmp, "nginx", workers, origin, nginx_conns, port, keepalive=args.nginx_keepalive)
            p = start(["nginx", "-c", conf, "-p", tmp], port, 0)
            procs.append(p)
            target("nginx", p, origin, f"http://127.0.0.1:{port}/")

        def portico_a(name, origin, listen, tls=None, h2c=False):
            """Portico a; `tls` = (port, cert, key) adds a TLS listener (h2 by ALPN), `h2c`
            lets the plain listener take HTTP/2 with prior knowledge too."""
            extra = ", h2c: true" if h2c else ""
            if tls:
                extra += f', tls: [{{listen: "127.0.0.1:{tls[0]}", cert: "{tls[1]}", key: "{tls[2]}"}}]'
            admin = free_port()
            conf = os.path.join(tmp, f"{name}.yaml")
            with open(conf, "w") as f:
                f.write(f"""server: {{listen: ["127.0.0.1:{listen}"]{extra}, threads: {workers}, admin: {{listen: "127.0.0.1:{admin}"}}}}
access_log: {{enabled: false}}
routes: [{{name: api, service: origin}}]
services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}
""")
            p = start([PORTICO, "run", "-c", conf], listen, 0, env={**os.environ, "RUST_LOG": "error"})
            procs.append(p)
            if tls:
                wait_port(tls[0])
            return p

        a_port, origin = free_port(), new_origin()
        target("portico-a", portico_a("a", origin, a_port), origin, f"http://127.0.0.1:{a_port}/")

        redis_port = None
        if shutil.which("redis-server"):
            redis_port = free_port()
            procs.append(start(["redis-server", "--port", str(redis_port), "--save", "", "--bind", "127.0.0.1"], redis_port, 1))
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
                           + ["--cluster-yes"], check=True, stdout=subprocess.DEVNULL, timeout=60)
            seeds = ", ".join(f'"redis://127.0.0.1:{cp}"' for cp in ports)
            cluster_section = f"redis: {{cluster: [{seeds}]}}\n"
            time.sleep(2)  # every node reports cluster_state:ok

        def portico_b(name, store="local", work_stealing=False, redis_section=None, auth=False):
            port, admin, origin = free_port(), free_port(), new_origin()
            # Each variant's origin is registered as a service of its own (one registry).
            svc = f"origin-{name}"
            discovery = redis_section or (f'redis: {{url: "redis://127.0.0.1:{redis_port}/0"}}\n' if redis_port else "")
            service = ("{discovery: redis}" if discovery else f'{{instances: ["127.0.0.1:{origin}"]}}')
            if redis_section:
                reg_conf = os.path.join(tmp, f"{name}-register.yaml")
                with open(reg_conf, "w") as f:
                    f.write(redis_section + f"routes: [{{name: api, service: {svc}}}]\n"
                            f"services: {{{svc}: {{discovery: redis}}}}\n")
                registrar = ["--config", reg_conf]
            else:
                registrar = ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
            if discovery:
                procs.append(subprocess.Popen(pin(1) + [PORTICO, "register"] + registrar
                                              + ["--service", svc, "--addr", f"127.0.0.1:{origin}"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            conf = os.path.join(tmp, f"{name}.yaml")
            # `auth: [keys]`: an API key looked up among 1,000 consumers on every request.
            auth_route = ", auth: [keys]" if auth else ""
            auth_section = ""
            headers = []
            if auth:
                consumers = "".join(f'\n  c{i}: {{api_keys: ["bench-consumer-key-{i:06}"]}}' for i in range(1000))
                auth_section = f"\nconsumers:{consumers}\nauth: {{keys: {{type: api_key}}}}"
                headers = ["x-api-key: bench-consumer-key-000042"]
            with open(conf, "w") as f:
                f.write(f"""server: {{listen: ["127.0.0.1:{port}"], threads: {workers}, work_stealing: {str(work_stealing).lower()}, admin: {{listen: "127.0.0.1:{admin}"}}}}
{discovery}access_log: {{enabled: true, path: "{tmp}/{name}-access.log"}}
tracing: {{otlp_endpoint: "http://127.0.0.1:{otlp_port}/v1/traces", sample_ratio: 0.01}}
rate_limits: {{never: {{key: client_ip, limit: 1000000, per: 1s, store: {store}}}}}
routes: [{{name: api, service: {svc}, rate_limits: [never]{auth_route}}}]
services: {{{svc}: {service}}}{auth_section}
kpis:
  - {{name: reads, routes: [api], methods: [GET], status: 2xx}}
  - {{name: users, request_header: {{name: x-user-id}}}}
""")
            p = start([PORTICO, "run", "-c", conf], port, 0, env={**os.environ, "RUST_LOG": "error"})
            procs.append(p)
            target(name, p, origin, f"http://127.0.0.1:{port}/", headers)

        portico_b("portico-b")
        portico_b("portico-b-keys", auth=True)
        if args.steal:
            portico_b("portico-b-steal", work_stealing=True)
        if redis_port:
            portico_b("portico-b-redis", store="redis")
        if cluster_section:
            portico_b("portico-b-cluster", store="redis", redis_section=cluster_section)

        if h2:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                            "-days", "2", "-keyout", key, "-out", cert],
                           check=True, capture_output=True, timeout=60)
            if shutil.which("nginx"):
                port, origin = free_port(), new_origin()
                # One upstream connection per stream in flight, plus the clients.
                conf = nginx_conf(tmp, "nginx-h2", workers, origin,
                                  max(1024, (H2_STREAMS + 2) * max(conn_counts)), port, tls=(cert, key),
                                  keepalive=args.nginx_keepalive)
                p = start(["nginx", "-c", conf, "-p", tmp], port, 0)
                procs.append(p)
                target("nginx-h2", p, origin, f"https://127.0.0.1:{port}/", is_h2=True)
            # Two processes, so that each row has its own origin and its own peak RSS; the TLS
            # one's plain listener is not measured.
            plain, tls_port, origin = free_port(), free_port(), new_origin()
            p = portico_a("a-h2", origin, plain, tls=(tls_port, cert, key))
            target("portico-a-h2", p, origin, f"https://127.0.0.1:{tls_port}/", is_h2=True)
            plain, origin = free_port(), new_origin()
            p = portico_a("a-h2c", origin, plain, h2c=True)
            target("portico-a-h2c", p, origin, f"http://127.0.0.1:{plain}/", is_h2=True)
        time.sleep(2)  # registry first sync, tracing provider up

        # (connections, target) -> per-round lists; `lat` holds wrk's {"50", "99"} or h2load's
        # {"min", "max", "mean", "sd"} (ms), `opened` the upstream connections opened per run.
        results = {}
        rss_reset = True
        for conns in conn_counts:
            for t in targets.values():
                if t["proc"]:
                    rss_reset = reset_peak_rss(pids_of(t["proc"].pid)) and rss_reset
            for rnd in range(args.rounds):
                for name, t in targets.items():
                    proc = t["proc"]
                    pids = pids_of(proc.pid) if proc else []
                    up0, _ = origin_stats(t["origin"])
                    c0 = cpu_seconds(pids)
                    if t["h2"]:
                        rps, total, errors, lat = h2load(t["url"], args.duration, conns)
                    else:
                        rps, total, errors, lat = wrk(t["url"], args.duration, conns, t["headers"])
                    c1 = cpu_seconds(pids)
                    up1, _ = origin_stats(t["origin"])
                    r = results.setdefault((conns, name), {"rps": [], "cpu": [], "lat": [], "opened": [], "errors": 0})
                    r["rps"].append(rps)
                    r["lat"].append(lat)
                    r["opened"].append(up1 - up0 - 1)  # less the second stats query's own connection
                    r["errors"] += errors
                    if proc:
                        r["cpu"].append((c1 - c0) * 1e6 / max(total, 1))
                    lat_s = (f"mean {lat['mean']:.3f} ms  max {lat['max']:.3f} ms" if t["h2"]
                             else f"p50 {lat['50']:.3f} ms  p99 {lat['99']:.3f} ms")
                    print(f"c{conns} round {rnd + 1} {name:17} {rps:10.0f} req/s  {lat_s}"
                          + (f"  {r['cpu'][-1]:.1f} us CPU/req" if proc else "")
                          + f"  {r['opened'][-1]} upstream conns opened"
                          + (f"  {errors} errors" if errors else ""), flush=True)
            for name, t in targets.items():
                r = results[(conns, name)]
                if not t["h2"]:
                    r["fixed"] = fixed_rate(t["url"], args.duration, args.rate, conns, t["headers"])
                r["rss"] = peak_rss_kb(pids_of(t["proc"].pid)) if t["proc"] else None

        med = lambda xs: statistics.median(xs) if xs else float("nan")
        h1_names = [n for n, t in targets.items() if not t["h2"]]
        h2_names = [n for n, t in targets.items() if t["h2"]]

        def ratios(conns, name, bases):
            r = results[(conns, name)]
            rps, cpu = med(r["rps"]), med(r["cpu"])
            out = []
            for b in bases:
                if (conns, b) not in results:
                    out.append("–")
                    continue
                b_rps, b_cpu = med(results[(conns, b)]["rps"]), med(results[(conns, b)]["cpu"])
                out.append(f"{ratio(rps, b_rps):.2f}x, {ratio(cpu, b_cpu):.2f}x" if r["cpu"]
                           else f"{ratio(rps, b_rps):.2f}x, –")
            return out

        def common(r):
            cpu_s = f"{med(r['cpu']):.1f}" if r["cpu"] else "–"
            opened_s = f"{fmt_count(med(r['opened']))} ({max(r['opened'])})"
            rss_s = f"{r['rss'] / 1024:.1f}" if r.get("rss") else "–"
            return cpu_s, opened_s, rss_s

        if workers == 1:
            mode = ("1 worker per proxy, pinned to core 0; load generators, the origin and Redis on core 1" if pinned
                    else "1 worker per proxy, nothing pinned (one core or no taskset)")
        else:
            mode = f"{workers} workers per proxy, nothing pinned"
        counts_s = ",".join(str(c) for c in conn_counts)
        if "nginx" in targets:
            mode += f"; nginx upstream keepalive {args.nginx_keepalive}"
        lines = [
            f"Load benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"{mode}; {args.rounds} interleaved rounds of {args.duration}s per connection count, "
            f"wrk -t1 -c{counts_s}, small JSON echo responses (~200-300 bytes of body)",
            "",
            "| conns | target | req/s median (min–max) | p50 / p99 ms (saturation) | p50 / p99 ms @ "
            f"{args.rate}/s | CPU µs/req | upstream conns opened, median (max) | peak RSS MB "
            "| vs bare (req/s, CPU) | vs nginx (req/s, CPU) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for conns in conn_counts:
            for name in h1_names:
                r = results[(conns, name)]
                fixed = r.get("fixed")
                fixed_s = (f"{fixed.get('50', float('nan')):.2f} / {fixed.get('99', float('nan')):.2f}"
                           if fixed else "n/a (no oha or h2load)")
                cpu_s, opened_s, rss_s = common(r)
                vs = ratios(conns, name, ("bare", "nginx"))
                lines.append(
                    f"| {conns} | {name} | {med(r['rps']):.0f} ({min(r['rps']):.0f}–{max(r['rps']):.0f}) "
                    f"| {med([l['50'] for l in r['lat']]):.2f} / {med([l['99'] for l in r['lat']]):.2f} "
                    f"| {fixed_s} | {cpu_s} | {opened_s} | {rss_s} | {vs[0]} | {vs[1]} |")
                if r["errors"]:
                    lines.append(f"|  | ↳ {name}: {r['errors']} non-2xx responses or socket errors | | | | | | | | |")
        if h2_names:
            lines += ["", f"HTTP/2 (h2load -t1 -m {H2_STREAMS}; TLS rows negotiate h2 by ALPN, h2c uses prior "
                      "knowledge; the proxies speak HTTP/1.1 to the origin):", "",
                      "| conns | target | req/s median (min–max) | request time mean / sd / max ms | CPU µs/req "
                      "| upstream conns opened, median (max) | peak RSS MB | vs nginx-h2 (req/s, CPU) |",
                      "|---|---|---|---|---|---|---|---|"]
            for conns in conn_counts:
                for name in h2_names:
                    r = results[(conns, name)]
                    cpu_s, opened_s, rss_s = common(r)
                    lat_s = " / ".join(f"{med([l[k] for l in r['lat']]):.2f}" for k in ("mean", "sd", "max"))
                    lines.append(
                        f"| {conns} | {name} | {med(r['rps']):.0f} ({min(r['rps']):.0f}–{max(r['rps']):.0f}) "
                        f"| {lat_s} | {cpu_s} | {opened_s} | {rss_s} | {ratios(conns, name, ('nginx-h2',))[0]} |")
                    if r["errors"]:
                        lines.append(f"|  | ↳ {name}: {r['errors']} requests failed | | | | | | |")
        lines += ["", "Upstream conns opened: connections the origin accepted during each run (its "
                  "`/echo/stats`, read directly before and after the run); direct: wrk's connections, "
                  "one more than -c (wrk first opens one to check the address)."]
        if not rss_reset:
            lines.append("Peak RSS could not be reset between connection counts: it is the peak since start.")

        # Rounds are interleaved, so the ratio within each round cancels most of the drift of a
        # shared machine; their median is the figure the targets in issue 8 are checked against.
        def paired(conns, name, base_name, key):
            xs, ys = results[(conns, name)][key], results[(conns, base_name)][key]
            return statistics.median(ratio(x, y) for x, y in zip(xs, ys)) if xs and ys else float("nan")

        for conns in conn_counts:
            lines += ["", f"Paired per-round ratios (median over rounds), {conns} connections:", ""]
            for name, base_name in [("portico-a", "bare"), ("portico-b", "bare"), ("portico-b-keys", "portico-b"),
                                    ("portico-b-steal", "bare"),
                                    ("portico-b-redis", "portico-b"), ("portico-b-cluster", "portico-b"),
                                    ("portico-b-cluster", "portico-b-redis"), ("portico-b", "nginx"),
                                    ("portico-a-h2", "nginx-h2"), ("portico-a-h2c", "portico-a-h2")]:
                if (conns, name) in results and (conns, base_name) in results:
                    lines.append(f"- {name} / {base_name}: req/s {paired(conns, name, base_name, 'rps'):.2f}x, "
                                 f"CPU per request {paired(conns, name, base_name, 'cpu'):.2f}x")
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
