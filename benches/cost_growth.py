#!/usr/bin/env python3
"""Where the cost per request goes as connections grow: user and system CPU microseconds per
request of bare Pingora, Portico a (routing only) and a local-only Portico b (local rate
limit, KPI, access log), each pinned to core 0 with wrk and the origin on core 1, at each
connection count, interleaved rounds.

    python3 benches/cost_growth.py [--connections 16,64,256] [--rounds 2] [--duration 3]

Pair it with callgrind under the same load to see whether instructions per request move
(BENCHMARKS.md, "Why cost per request grows with connections"): if they stay flat while user
time grows, the growth is memory (each connection's state falls out of the caches), not work.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the helpers of the load benchmark)

TCK = os.sysconf("SC_CLK_TCK")


def user_sys(pids):
    user = sys_ = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11]) / TCK
        sys_ += int(fields[12]) / TCK
    return user, sys_


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", default="16,64,256")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=3)
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    portico = os.path.join(root, "target/release/portico")
    bare = os.path.join(root, "target/release/examples/bare_proxy")
    tmp = tempfile.mkdtemp(prefix="portico-growth-")
    env = {**os.environ, "RUST_LOG": "error"}
    procs, targets = [], {}
    try:
        origin = load.free_port()
        procs.append(load.start([portico, "echo", "--listen", f"127.0.0.1:{origin}"], origin, 1))
        port = load.free_port()
        targets["bare"] = (load.start([bare, f"127.0.0.1:{port}", f"127.0.0.1:{origin}", "1"], port, 0, env=env), port)
        for kind in ("a", "b"):
            port, admin = load.free_port(), load.free_port()
            extra = ("access_log: {enabled: false}\nroutes: [{name: api, service: origin}]\n" if kind == "a" else
                     f'access_log: {{enabled: true, path: "{tmp}/access.log"}}\n'
                     "rate_limits: {never: {limit: 1000000, per: 1s}}\n"
                     "routes: [{name: api, service: origin, rate_limits: [never]}]\n"
                     "kpis: [{name: reads, routes: [api], methods: [GET], status: 2xx}]\n")
            conf = os.path.join(tmp, f"{kind}.yaml")
            with open(conf, "w") as f:
                f.write(f'server: {{listen: ["127.0.0.1:{port}"], threads: 1, admin: {{listen: "127.0.0.1:{admin}"}}}}\n'
                        f'{extra}services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}\n')
            targets[f"portico-{kind}"] = (load.start([portico, "run", "-c", conf], port, 0, env=env), port)
        procs += [p for p, _ in targets.values()]
        conns = [int(c) for c in args.connections.split(",")]
        rows = {(c, n): [] for c in conns for n in targets}
        for _ in range(args.rounds):
            for c in conns:
                for name, (p, port) in targets.items():
                    pids = load.pids_of(p.pid)
                    u0, s0 = user_sys(pids)
                    _rps, total, _err, _lat = load.wrk(f"http://127.0.0.1:{port}/", args.duration, c)
                    u1, s1 = user_sys(pids)
                    rows[(c, name)].append(((u1 - u0) * 1e6 / total, (s1 - s0) * 1e6 / total))
        print("| conns | target | user µs/req | system µs/req | total | vs bare (total) |")
        print("|---|---|---|---|---|---|")
        for c in conns:
            base = sum(statistics.median(x[i] for x in rows[(c, "bare")]) for i in (0, 1))
            for name in targets:
                u = statistics.median(x[0] for x in rows[(c, name)])
                s = statistics.median(x[1] for x in rows[(c, name)])
                print(f"| {c} | {name} | {u:.1f} | {s:.1f} | {u + s:.1f} | {(u + s) / base:.2f}x |")
    finally:
        for p in reversed(procs):
            p.terminate()


if __name__ == "__main__":
    main()
