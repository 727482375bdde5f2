#!/usr/bin/env python3
"""Memory per idle keep-alive connection: nginx, bare Pingora and Portico, one run.

    python3 benches/idle_memory.py [--connections 10000] [--no-build] [--portico BINARY ...]

Each proxy (one worker, the echo origin behind it, everything on loopback) is started alone;
its RSS is read, then N client connections are opened, each sends one keep-alive GET and reads
the answer (so every connection has been through a request, as a real idle client's has), and
all are held open; RSS is read again once every connection has been idle for 7 s (Portico sheds
an idle connection's request state after 1 s, puts a cleartext one to sleep without a task after
`limits.dormant_after`, 5 s by default, and gives freed pages back a second after its dormant
set stops changing) and the reading has stopped moving, and a third
time after one more connection has sent 300 requests over ~3 s. The differences from the first
reading divided by N are the proxy's memory per idle connection with the process idle and with
it serving that trickle: mimalloc returns freed pages to the system only when the thread that
freed them allocates again, so a wholly idle process can keep the request state its
connections gave up. The peak (VmHWM) is printed too, as the memory the connections needed
while their requests ran. The client side opens at most N sockets and gives up after
120 s; the proxies' idle timeouts (60 s) are longer than the measurement.

Prints a table and writes it to target/bench-idle-memory.md.
"""

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import BARE, PORTICO, ROOT, free_port, wait_port  # noqa: E402  (the load benchmark's helpers)


def rss_kb(pids, field="VmRSS:"):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def pids_of(root):
    """The process and its children (nginx's worker)."""
    out = [root]
    try:
        kids = subprocess.run(["pgrep", "-P", str(root)], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
    except OSError:
        pass
    return out


def settled_rss(pids, timeout=10):
    """RSS once two reads 0.5 s apart agree within 1%."""
    last = rss_kb(pids)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.5)
        now = rss_kb(pids)
        if abs(now - last) <= last * 0.01:
            return now
        last = now
    return last


def get(s):
    """Sends one keep-alive GET on socket `s` (plain or TLS) and reads the whole answer; returns
    its head."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the connection was closed before an answer")
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def trickle(port, n=300, every=0.01):
    """Sends n keep-alive requests on one new connection, one every `every` seconds."""
    t = socket.create_connection(("127.0.0.1", port), 5)
    for _ in range(n):
        get(t)
        time.sleep(every)
    t.close()


def hold_connections(port, n, deadline):
    """Opens n keep-alive connections, one request each; returns the open sockets."""
    socks = []
    for _ in range(n):
        if time.time() > deadline:
            break
        s = socket.create_connection(("127.0.0.1", port), 5)
        head = get(s)
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit(f"unexpected answer: {head[:80]!r}")
        socks.append(s)
    return socks


def portico_yaml(port, admin, origin, max_connections, limits=""):
    """One worker, no access log, one route to the origin; `limits` adds `server.limits` keys."""
    return f"""server:
  listen: ["127.0.0.1:{port}"]
  threads: 1
  admin: {{listen: "127.0.0.1:{admin}"}}
  limits: {{max_connections: {max_connections}{limits}}}
access_log: {{enabled: false}}
routes: [{{name: api, service: origin}}]
services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--portico", action="append", metavar="BINARY",
                    help="a Portico binary to measure (repeatable: e.g. a baseline build beside "
                         "target/release/portico); default target/release/portico")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=ROOT, check=True)

    tmp = tempfile.mkdtemp(prefix="portico-idle-")
    origin = free_port()
    echo = subprocess.Popen([PORTICO, "echo", "--listen", f"127.0.0.1:{origin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(origin)

    def nginx():
        port = free_port()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
worker_rlimit_nofile {want};
events {{ worker_connections {want}; }}
http {{ access_log off; keepalive_timeout 60s; keepalive_requests 100000;
  upstream o {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ proxy_pass http://o;
  proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")
        return ["nginx", "-c", conf, "-p", tmp], port

    def bare():
        port = free_port()
        return [BARE, f"127.0.0.1:{port}", f"127.0.0.1:{origin}", "1"], port

    def portico(binary):
        port, admin = free_port(), free_port()
        conf = os.path.join(tmp, "portico.yaml")
        with open(conf, "w") as f:
            f.write(portico_yaml(port, admin, origin, args.connections + 100))
        return [binary, "run", "-c", conf], port

    binaries = args.portico or [PORTICO]
    targets = [("bare", bare)] + [
        ("portico" if len(binaries) == 1 else f"portico {i + 1}", lambda b=b: portico(b))
        for i, b in enumerate(binaries)]
    if shutil.which("nginx"):
        targets.insert(0, ("nginx", nginx))
    rows = []
    try:
        for name, make in targets:
            cmd, port = make()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "RUST_LOG": "error"})
            try:
                wait_port(port)
                time.sleep(0.5)
                pids = pids_of(proc.pid)
                before = settled_rss(pids)
                started = time.time()
                socks = hold_connections(port, args.connections, started + 120)
                opened = time.time() - started
                time.sleep(7)
                idle = settled_rss(pids)
                trickle(port)
                after = settled_rss(pids)
                peak = rss_kb(pids, "VmHWM:")
                per = (after - before) * 1024 / max(len(socks), 1)
                per_idle = (idle - before) * 1024 / max(len(socks), 1)
                rows.append((name, before, after, peak, per_idle, per))
                print(f"{name:8} idle {before / 1024:6.1f} MiB  with {len(socks)} connections "
                      f"{after / 1024:7.1f} MiB (peak {peak / 1024:.1f})  ({opened:.1f} s to open)  "
                      f"{per_idle / 1024:.1f} / {per / 1024:.1f} KiB per connection", flush=True)
                for s in socks:
                    s.close()
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        echo.terminate()
        echo.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)

    base = {name: per for name, _, _, _, _, per in rows}
    lines = [
        f"Idle keep-alive connections — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, one worker each, {args.connections} connections after one request each",
        "",
        "| proxy | RSS idle MiB | RSS with connections MiB | peak RSS MiB | KiB per connection, process idle "
        "| KiB per connection, serving a trickle | vs nginx |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, before, after, peak, per_idle, per in rows:
        ratio = f"{per / base['nginx']:.2f}x" if "nginx" in base and base["nginx"] > 0 else "–"
        lines.append(f"| {name} | {before / 1024:.1f} | {after / 1024:.1f} | {peak / 1024:.1f} | "
                     f"{per_idle / 1024:.1f} | {per / 1024:.1f} | {ratio} |")
    report = "\n".join(lines)
    print("\n" + report)
    out = os.path.join(ROOT, "target", "bench-idle-memory.md")
    with open(out, "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
