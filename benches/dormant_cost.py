#!/usr/bin/env python3
"""What going dormant costs a connection that idles between requests, and what it saves.

    python3 benches/dormant_cost.py [--connections 1000] [--period 1.5] [--duration 12] [--rounds 3]

N keep-alive connections each send a GET every PERIOD seconds through Portico (one worker, the
echo origin behind it, all on loopback) with `limits.dormant_after` at 1s (every request follows
a dormant spell) and at 0s (connections never leave their task), in interleaved rounds. Prints
the proxy's CPU per request and its RSS at the end of each round (CPU: utime + stime of the
proxy process; the Python client's own cost is not counted). With a period under 1 s neither
configuration sheds or sleeps, so the two should match.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import PORTICO, free_port, wait_port  # noqa: E402
from idle_memory import portico_yaml  # noqa: E402


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def poll(port, n, period, duration):
    """Requests answered by N connections polling every `period` s for `duration` s."""
    done = 0
    end = time.time() + duration

    async def client(i):
        nonlocal done
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(period * i / n)
        while time.time() < end:
            w.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await r.readexactly(length)
            done += 1
            await asyncio.sleep(period)
        w.close()

    await asyncio.gather(*(client(i) for i in range(n)))
    return done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--period", type=float, default=1.5)
    ap.add_argument("--duration", type=float, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--portico", default=PORTICO)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="portico-dormant-")
    origin = free_port()
    echo = subprocess.Popen([args.portico, "echo", "--listen", f"127.0.0.1:{origin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(origin)
    results = {"1s": [], "0s": []}
    try:
        for round_ in range(args.rounds):
            for after in ("1s", "0s"):
                port, admin = free_port(), free_port()
                conf = os.path.join(tmp, "portico.yaml")
                with open(conf, "w") as f:
                    f.write(portico_yaml(port, admin, origin, args.connections + 100,
                                         f", dormant_after: {after}"))
                proc = subprocess.Popen([args.portico, "run", "-c", conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
                try:
                    wait_port(port)
                    before = cpu_seconds(proc.pid)
                    done = asyncio.run(poll(port, args.connections, args.period, args.duration))
                    used = cpu_seconds(proc.pid) - before
                    per = 1e6 * used / max(done, 1)
                    results[after].append(per)
                    print(f"round {round_ + 1} dormant_after {after}: {done} requests, "
                          f"{per:.1f} µs CPU per request, RSS {rss_kb(proc.pid) / 1024:.1f} MiB", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    finally:
        echo.terminate()
        echo.wait(timeout=5)
    ratios = sorted(a / b for a, b in zip(results["1s"], results["0s"]))
    print(f"dormant (1s) / awake (0s) CPU per request, median of {len(ratios)} rounds: "
          f"{ratios[len(ratios) // 2]:.3f}  (rounds: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
