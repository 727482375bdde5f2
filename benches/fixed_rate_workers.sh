#!/usr/bin/env bash
# Latency at a fixed offered rate with two workers: Portico a with work stealing off (the
# default) and on, and the bare Pingora proxy the same two ways (oha -q RATE, 5 s).
# BENCHMARKS.md: the no-steal tail at 2,000 req/s (second session) and its fix (third).
#   usage: benches/fixed_rate_workers.sh [RATE] [CONNS...]   (needs oha: cargo install oha --locked)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-2000}; shift || true; CONNS=("$@"); [ ${#CONNS[@]} -gt 0 ] || CONNS=(2 16)
command -v oha >/dev/null || { echo "needs oha (cargo install oha --locked)"; exit 1; }
. benches/common.sh
O=$(port); target/release/portico echo --listen 127.0.0.1:$O >/dev/null 2>&1 & wait_port $O
measure() {  # measure LABEL PORT
  for c in "${CONNS[@]}"; do
    oha -z 5s -q "$RATE" -c "$c" --no-tui --output-format json "http://127.0.0.1:$2/" 2>/dev/null | python3 -c "
import json, sys; d = json.load(sys.stdin)['latencyPercentiles']
print('%-22s c%-4s p50 %.3f  p99 %.3f  p99.9 %.3f ms' % ('$1', '$c', d['p50']*1e3, d['p99']*1e3, d['p99.9']*1e3))"
  done
}
for steal in false true; do
  P=$(port)
  printf 'server: {listen: ["127.0.0.1:%s"], threads: 2, work_stealing: %s, admin: {listen: "127.0.0.1:%s"}}\naccess_log: {enabled: false}\nroutes: [{name: api, service: origin}]\nservices: {origin: {instances: ["127.0.0.1:%s"]}}\n' \
    "$P" "$steal" "$(port)" "$O" > "$T/a.yaml"
  RUST_LOG=error target/release/portico run -c "$T/a.yaml" >/dev/null 2>&1 & pid=$!; wait_port $P
  measure "portico-a steal=$steal" "$P"; kill $pid; wait $pid 2>/dev/null || true
done
for mode in nosteal steal; do
  P=$(port); RUST_LOG=error target/release/examples/bare_proxy 127.0.0.1:$P 127.0.0.1:$O 2 $mode >/dev/null 2>&1 & pid=$!
  wait_port $P; measure "bare $mode" "$P"; kill $pid; wait $pid 2>/dev/null || true
done
