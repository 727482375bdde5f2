#!/usr/bin/env python3
"""Two Portico builds against each other, interleaved, one run: for allocator, profile or
runtime experiments that change the binary rather than the configuration.

    python3 benches/compare_builds.py OLD_BINARY NEW_BINARY [--rounds 6] [--duration 4]

Both serve Portico a (routing only) and a local-only Portico b (local rate limit, KPIs, access
log) in front of one echo origin, and with `--redis` Portico r (b with the limit in the Redis
store of a redis-server on core 1, one EVALSHA per request), pinned as in benches/load.py
(proxy on core 0, wrk, origin and Redis on core 1). Prints CPU µs per request, req/s and peak
RSS per build, and the paired per-round CPU ratio NEW/OLD. Build the second binary from a worktree, e.g.
`git worktree add /tmp/exp && (cd /tmp/exp && <edit> && cargo build --release --bin portico)`.
"""

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the helpers of the load benchmark)


def config(tmp, name, kind, port, admin, origin, redis_port=None, tracing_port=None):
    store = "redis" if kind == "r" else "local"
    redis = f'redis: {{url: "redis://127.0.0.1:{redis_port}/0"}}\n' if kind == "r" else ""
    extra = ("access_log: {enabled: false}\nroutes: [{name: api, service: origin}]\n" if kind == "a" else
             f'{redis}access_log: {{enabled: true, path: "{tmp}/{name}.log"}}\n'
             f"rate_limits: {{never: {{limit: 1000000, per: 1s, store: {store}}}}}\n"
             "routes: [{name: api, service: origin, rate_limits: [never]}]\n"
             "kpis: [{name: reads, routes: [api], methods: [GET], status: 2xx}]\n")
    if tracing_port and kind != "a":
        # 1% of new roots sampled, exported to a port nothing answers (export errors are
        # counted off the request path): the request path's tracing cost only.
        extra += f'tracing: {{otlp_endpoint: "http://127.0.0.1:{tracing_port}/v1/traces", sample_ratio: 0.01}}\n'
    path = os.path.join(tmp, f"{name}-{kind}.yaml")
    with open(path, "w") as f:
        f.write(f'server: {{listen: ["127.0.0.1:{port}"], threads: 1, admin: {{listen: "127.0.0.1:{admin}"}}}}\n'
                f'{extra}services: {{origin: {{instances: ["127.0.0.1:{origin}"]}}}}\n')
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--redis", action="store_true", help="also compare the Redis-store limit")
    ap.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections")
    ap.add_argument("--tracing", action="store_true", help="tracing on (1%% sampled) in b and r")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    builds = {"old": args.old, "new": args.new}
    tmp = tempfile.mkdtemp(prefix="portico-compare-")
    procs, targets = [], {}
    try:
        origin = load.free_port()
        procs.append(load.start([args.old, "echo", "--listen", f"127.0.0.1:{origin}"], origin, 1))
        kinds = ("a", "b", "r") if args.redis else ("a", "b")
        redis_port = None
        if args.redis:
            redis_port = load.free_port()
            procs.append(load.start(["redis-server", "--port", str(redis_port), "--save", "",
                                     "--bind", "127.0.0.1"], redis_port, 1))
        for name, binary in builds.items():
            for kind in kinds:
                port, admin = load.free_port(), load.free_port()
                conf = config(tmp, name, kind, port, admin, origin, redis_port,
                              load.free_port() if args.tracing else None)
                p = load.start([binary, "run", "-c", conf], port, 0, env={**os.environ, "RUST_LOG": "error"})
                procs.append(p)
                targets[f"{name}-{kind}"] = (p, port)
        results = {k: [] for k in targets}
        for _ in range(args.rounds):
            for key, (p, port) in targets.items():
                pids = load.pids_of(p.pid)
                c0 = load.cpu_seconds(pids)
                rps, total, _errors, _lat = load.wrk(f"http://127.0.0.1:{port}/", args.duration, args.connections)
                results[key].append(((load.cpu_seconds(pids) - c0) * 1e6 / max(total, 1), rps))
        for key, rows in results.items():
            rss = load.peak_rss_kb(load.pids_of(targets[key][0].pid)) / 1024
            print(f"{key:6} CPU µs/req {statistics.median(r[0] for r in rows):5.1f}  "
                  f"req/s {statistics.median(r[1] for r in rows):7.0f}  peak RSS {rss:5.1f} MB")
        for kind in kinds:
            ratios = [n[0] / o[0] for n, o in zip(results[f"new-{kind}"], results[f"old-{kind}"])]
            print(f"new/old CPU per request, Portico {kind}: median {statistics.median(ratios):.3f} "
                  f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
        if args.redis:
            # The Redis store's target is a throughput ratio to the local store, same build.
            for name in builds:
                ratios = [r[1] / b[1] for r, b in zip(results[f"{name}-r"], results[f"{name}-b"])]
                print(f"{name}: Redis-store / local-store req/s, paired: median "
                      f"{statistics.median(ratios):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
