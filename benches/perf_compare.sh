#!/usr/bin/env bash
# Where CPU time goes, bare Pingora vs Portico b: each proxy pinned to core 0 with one worker,
# wrk -t1 on core 1, `perf record` (software clock, 4 kHz) for 4 s under load; prints req/s and
# CPU per request split by kernel / user and, in user space, by crate.
#   usage: benches/perf_compare.sh [CONNECTIONS]     (needs perf and wrk; BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-64}
command -v perf >/dev/null && command -v wrk >/dev/null || { echo "needs perf and wrk"; exit 1; }
. benches/common.sh
O=$(port); taskset -c 1 target/release/portico echo --listen 127.0.0.1:$O >/dev/null 2>&1 & wait_port $O
profile() {  # NAME PORT PID
  taskset -c 1 wrk -t1 -c"$C" -d2s "http://127.0.0.1:$2/" >/dev/null   # warm-up
  perf record -q -F 4000 -p "$3" -o "$T/$1.data" -- sleep 4 >/dev/null 2>&1 & local rec=$!
  local rps; rps=$(taskset -c 1 wrk -t1 -c"$C" -d4s "http://127.0.0.1:$2/" | awk '/Requests\/sec/ {print $2}')
  wait $rec || true
  perf report -i "$T/$1.data" --no-children --sort dso,sym -q -g none --stdio -F sample,dso,sym 2>/dev/null \
    | python3 -c "
import re, sys, collections
name, rps = '$1', float('$rps')
c = collections.Counter()
for line in sys.stdin:
    parts = line.split(None, 2)
    if len(parts) < 3 or not parts[0].isdigit():
        continue
    n, dso, sym = int(parts[0]), parts[1], re.sub(r'^\[[.k]\]\s*', '', parts[2].strip())
    if dso.startswith('[kernel'):
        key = 'kernel'
    elif dso.startswith('libc'):
        key = 'libc malloc/free' if re.search('malloc|free|chunk|consolidate', sym) else 'libc other'
    elif dso == '[vdso]':
        key = 'vdso (clock reads)'
    else:
        s = sym.lstrip('<')
        key = 'mimalloc' if re.match(r'_?mi_', s) else s.split('::')[0]
    c[key] += n
us = lambda n: n * 250.0 / (rps * 4)   # a sample is 250 us of CPU; per request over 4 s
total = sum(c.values())
print(f'{name}: {rps:.0f} req/s, {us(total):.1f} us CPU/request (kernel {us(c[\"kernel\"]):.1f}, user {us(total - c[\"kernel\"]):.1f})')
for k, n in c.most_common(14):
    if k != 'kernel':
        print(f'    {us(n):5.2f} us  {k}')
"
}
P=$(port); RUST_LOG=error taskset -c 0 target/release/examples/bare_proxy 127.0.0.1:$P 127.0.0.1:$O 1 >/dev/null 2>&1 & pid=$!
wait_port $P; profile bare $P $pid; kill $pid
P=$(port)
cat > "$T/b.yaml" <<Y
server: {listen: ["127.0.0.1:$P"], threads: 1, work_stealing: false, admin: {listen: "127.0.0.1:$(port)"}}
access_log: {enabled: true, path: "$T/b-access.log"}
tracing: {otlp_endpoint: "http://127.0.0.1:9/v1/traces", sample_ratio: 0.01}
rate_limits: {never: {key: client_ip, limit: 1000000, per: 1s, store: local}}
routes: [{name: api, service: origin, rate_limits: [never]}]
services: {origin: {instances: ["127.0.0.1:$O"]}}
kpis:
  - {name: reads, routes: [api], methods: [GET], status: 2xx}
  - {name: users, request_header: {name: x-user-id}}
Y
RUST_LOG=error taskset -c 0 target/release/portico run -c "$T/b.yaml" >/dev/null 2>&1 & pid=$!
wait_port $P; profile portico-b $P $pid; kill $pid
