#!/usr/bin/env python3
"""TLS client connections: memory per idle connection and CPU per MiB uploaded, per binary.

    python3 benches/tls_connections.py [--connections 3000] [--upload-mib 200] [BINARY ...]

For each Portico binary (default: target/release/portico; give two to compare builds, e.g. one
built from another commit in a `git worktree`): one worker behind a TLS listener (a self-signed
certificate made here), the echo origin behind it. N TLS connections each send one keep-alive
GET and are held; RSS is read after 3 s of idleness and again after one more connection has
sent 300 requests (see idle_memory.py on why). Then curl uploads M MiB over one HTTP/1.1 TLS
connection, three times, and the proxy's CPU time (user + system, /proc) per MiB is printed.
"""

import argparse
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_memory import get, rss_kb, settled_rss  # noqa: E402
from load import PORTICO, free_port, wait_port  # noqa: E402


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(binary, tmp, n, upload_mib):
    origin, port, plain, admin = free_port(), free_port(), free_port(), free_port()
    conf = os.path.join(tmp, "portico.yaml")
    with open(conf, "w") as f:
        f.write(f"""server:
  listen: ["127.0.0.1:{plain}"]
  tls: [{{listen: "127.0.0.1:{port}", cert: {tmp}/cert.pem, key: {tmp}/key.pem}}]
  threads: 1
  admin: {{listen: "127.0.0.1:{admin}"}}
  limits: {{max_connections: {n + 100}, max_request_body: 4GiB}}
access_log: {{enabled: false}}
routes: [{{name: api, service: origin}}]
services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}
""")
    echo = subprocess.Popen([binary, "echo", "--listen", f"127.0.0.1:{origin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen([binary, "run", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
    try:
        wait_port(origin)
        wait_port(port)
        time.sleep(0.5)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        before = settled_rss([proc.pid])
        socks = []
        deadline = time.time() + 120
        while len(socks) < n and time.time() < deadline:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5),
                                server_hostname="localhost")
            get(s)
            socks.append(s)
        time.sleep(3)
        idle = settled_rss([proc.pid])
        t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5), server_hostname="localhost")
        for _ in range(300):
            get(t)
            time.sleep(0.01)
        t.close()
        after = settled_rss([proc.pid])
        peak = rss_kb([proc.pid], "VmHWM:")
        for s in socks:
            s.close()
        per_mib = []
        for _ in range(3):
            start = cpu_seconds(proc.pid)
            subprocess.run(
                f"head -c {upload_mib}M /dev/zero | curl -sk --http1.1 -o /dev/null --max-time 120 "
                f"-H 'Content-Type: application/octet-stream' -T - https://127.0.0.1:{port}/up",
                shell=True, check=True)
            per_mib.append((cpu_seconds(proc.pid) - start) * 1e3 / upload_mib)
        count = max(len(socks), 1)
        return ((idle - before) / count, (after - before) / count, peak / 1024, per_mib)
    finally:
        proc.terminate()
        echo.terminate()
        proc.wait(timeout=10)
        echo.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--upload-mib", type=int, default=200)
    ap.add_argument("binaries", nargs="*", default=[PORTICO])
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(args.connections + 1024, hard), hard))
    with tempfile.TemporaryDirectory(prefix="portico-tls-") as tmp:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        print(f"| binary | KiB per idle TLS connection, process idle | serving a trickle | peak RSS MiB "
              f"| CPU ms per MiB uploaded (3 runs of {args.upload_mib} MiB) |")
        print("|---|---|---|---|---|")
        for binary in args.binaries:
            idle, trickle, peak, per_mib = measure(binary, tmp, args.connections, args.upload_mib)
            runs = " / ".join(f"{x:.2f}" for x in per_mib)
            print(f"| {binary} | {idle:.1f} | {trickle:.1f} | {peak:.0f} | {runs} |", flush=True)


if __name__ == "__main__":
    main()
