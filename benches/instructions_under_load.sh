#!/usr/bin/env bash
# Instructions per request under wrk's concurrent load (callgrind), to tell work from memory
# effects: if instructions stay flat while CPU per request grows with connections
# (benches/cost_growth.py), the growth is caches and the kernel, not work.
# Each figure: (I(9 s of wrk) - I(3 s)) / (N(9 s) - N(3 s)), a fresh valgrind'd proxy per run,
# so start-up and shutdown cancel.   usage: benches/instructions_under_load.sh [CONNS...]
# KINDS="b r" picks the proxies (default "bare a b"); r is b with the limit in the Redis store of
# a redis-server started here (the Redis-store limiter's work per request under concurrency).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=("$@"); [ $# -gt 0 ] || CONNS=(16 256)
command -v valgrind >/dev/null && command -v wrk >/dev/null || { echo "needs valgrind and wrk"; exit 1; }
. benches/common.sh
ORIGIN=$(port); target/release/portico echo --listen 127.0.0.1:$ORIGIN >/dev/null 2>&1 & wait_port $ORIGIN
read -r -a KINDS <<< "${KINDS:-bare a b}"
if [[ " ${KINDS[*]} " == *" r "* ]]; then
  command -v redis-server >/dev/null || { echo "KINDS with r needs redis-server"; exit 1; }
  RP=$(port); redis-server --port "$RP" --save "" --bind 127.0.0.1 >/dev/null 2>&1 & wait_port "$RP"
fi
config() {  # config KIND PORT
  local extra store=local redis=""
  [ "$1" = r ] && { store=redis; redis="redis: {url: \"redis://127.0.0.1:$RP/0\"}"; }
  if [ "$1" = a ]; then extra="access_log: {enabled: false}
routes: [{name: api, service: origin}]"; else extra="access_log: {enabled: true, path: \"$T/access.log\"}
$redis
rate_limits: {never: {limit: 1000000, per: 1s, store: $store}}
routes: [{name: api, service: origin, rate_limits: [never]}]
kpis: [{name: reads, routes: [api], methods: [GET], status: 2xx}]"; fi
  printf 'server: {listen: ["127.0.0.1:%s"], threads: 1, admin: {listen: "127.0.0.1:%s"}}\n%s\nservices: {origin: {instances: ["127.0.0.1:%s"]}}\n' \
    "$2" "$(port)" "$extra" "$ORIGIN" > "$T/$1.yaml"
}
run() {  # run NAME CONNS SECONDS -> "instructions requests"
  local p; p=$(port); local cmd
  if [ "$1" = bare ]; then cmd=(target/release/examples/bare_proxy 127.0.0.1:$p 127.0.0.1:$ORIGIN 1)
  else config "$1" "$p"; cmd=(target/release/portico run -c "$T/$1.yaml"); fi
  RUST_LOG=error valgrind --tool=callgrind --callgrind-out-file="$T/cg.out" "${cmd[@]}" >/dev/null 2>&1 & local v=$!
  wait_port "$p" 300; sleep 1
  local n; n=$(wrk -t1 -c"$2" -d"$3"s "http://127.0.0.1:$p/" | awk '/requests in/{print $1}')
  kill -INT $v; wait $v 2>/dev/null || true
  echo "$(grep -E '^(summary|totals):' "$T/cg.out" | head -1 | awk '{print $2}') $n"; rm -f "$T"/cg.out*
}
for name in "${KINDS[@]}"; do for c in "${CONNS[@]}"; do
  read -r i1 n1 <<< "$(run $name "$c" 3)"; read -r i2 n2 <<< "$(run $name "$c" 9)"
  printf '%-5s c%-4s %8d instructions/request\n' "$name" "$c" $(( (i2 - i1) / (n2 - n1) ))
done; done
