#!/usr/bin/env python3
"""A flood of distinct rate-limit keys against the in-process store: memory stays bounded.

    cargo build --release --bin portico && python3 benches/key_flood.py [--duration 60] [--connections 32]

Portico (one worker, pinned to core 0) limits by `header:x-api-key` (10 per minute, max_keys
100000 by default) in front of an echo origin; wrk (core 1) sends every request with a new key.
Prints the distinct keys sent, req/s, the process's RSS when idle and at its peak, the keys the
store holds (portico_ratelimit_local_keys) and the evictions that kept it bounded.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the helpers of the load benchmark)

KEYS_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/", { ["x-api-key"] = "key-" .. counter .. "-" .. math.random(1e9) })
end
"""


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def metric(admin, series):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    origin, port, admin = load.free_port(), load.free_port(), load.free_port()
    procs = [load.start([load.PORTICO, "echo", "--listen", f"127.0.0.1:{origin}"], origin, 1)]
    config = os.path.join(tmp, "flood.yaml")
    with open(config, "w") as f:
        f.write(
            f'server: {{listen: ["127.0.0.1:{port}"], threads: 1, admin: {{listen: "127.0.0.1:{admin}"}}}}\n'
            "access_log: {enabled: false}\n"
            'rate_limits: {per-key: {key: "header:x-api-key", limit: 10, per: 1m}}\n'
            "routes: [{name: api, service: origin, rate_limits: [per-key]}]\n"
            f'services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}\n'
        )
    gw = load.start([load.PORTICO, "run", "-c", config], port, 0, env={**os.environ, "RUST_LOG": "error"})
    procs.append(gw)
    try:
        time.sleep(1)
        idle = rss_kb(gw.pid, "VmRSS")
        script = os.path.join(tmp, "keys.lua")
        with open(script, "w") as f:
            f.write(KEYS_LUA)
        cmd = load.pin(1) + ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "-s", script,
                             f"http://127.0.0.1:{port}/"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        peak = rss_kb(gw.pid, "VmHWM")
        keys = metric(admin, 'portico_ratelimit_local_keys{rule="per-key",store="local"}')
        evicted = metric(admin, 'portico_ratelimit_local_evictions_total{rule="per-key",store="local"}')
        print(f"distinct keys sent     {total:,}")
        print(f"requests per second    {rps:,.0f}")
        print(f"RSS idle / peak        {idle / 1024:.1f} MiB / {peak / 1024:.1f} MiB")
        print(f"keys held at the end   {keys:,.0f} (max_keys 100,000)")
        print(f"keys evicted           {evicted:,.0f}")
    finally:
        for p in procs:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
