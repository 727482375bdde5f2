#!/usr/bin/env bash
# Instructions per request (valgrind callgrind; repeatable on a noisy machine, unlike time):
# bare Pingora proxy vs Portico routing-only vs Portico with the request-path features on.
# Each target serves N1 then N2 keep-alive requests in two runs; the difference divided by
# N2 - N1 cancels start-up and shutdown.   usage: benches/instructions.sh [N1] [N2]
# FEATURES=1 also measures Portico b without each feature in turn.
# PROFILE=1 also writes target/profile-NAME.txt: inclusive instructions per request of the
#   functions BENCHMARKS.md's "where the rest goes" table names, and the raw callgrind output
#   as target/profile-NAME.callgrind for callgrind_annotate.
# BROWSER=1 sends eleven browser-like request headers instead of Host alone (wrk's request).
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-1000}; N2=${2:-4000}
export RUST_LOG=error
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)"; exit 1; }
. benches/common.sh
ORIGIN=$(port); target/release/portico echo --listen 127.0.0.1:$ORIGIN >/dev/null 2>&1 & wait_port $ORIGIN
cat > "$T/client.py" <<'PY'
import http.client, os, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
headers = {"Host": "bench"}
if os.environ.get("BROWSER") == "1":
    headers.update({
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept": "application/json, text/plain, */*", "Accept-Language": "en-GB,en;q=0.5",
        "Accept-Encoding": "gzip, deflate, br", "Referer": "https://app.example.com/orders",
        "Origin": "https://app.example.com", "Cookie": "session=3f9a1c2b7d; theme=dark",
        "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-site", "Priority": "u=4"})
for _ in range(int(sys.argv[2])):
    c.request("GET", "/", headers=headers); r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
measure() {  # measure PORT N CMD... -> total instructions
  local p=$1 n=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$T/cg.%p" "$@" >/dev/null 2>&1 & local v=$!
  wait_port "$p"; sleep 1; python3 "$T/client.py" "$p" "$n"; kill -INT $v; wait $v 2>/dev/null || true
  local f; f=$(ls "$T"/cg.* | head -1); grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}'; rm -f "$T"/cg.*
}
profile() {  # profile NAME PORT CMD...: 3000 requests after a warm-up, counted alone
  local name=$1 p=$2; shift 2
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/prof.out" "$@" >/dev/null 2>&1 & local v=$!
  wait_port "$p"; sleep 1; python3 "$T/client.py" "$p" 200
  callgrind_control -i on $v >/dev/null; python3 "$T/client.py" "$p" 3000; callgrind_control -i off $v >/dev/null
  kill -INT $v; wait $v 2>/dev/null || true
  cp "$T/prof.out" "target/profile-$name.callgrind"
  # Inclusive counts; under LTO a function appears once per source file inlined into it, and
  # the line naming its own file is the whole function.
  callgrind_annotate --auto=no --inclusive=yes "$T/prof.out" 2>/dev/null \
    | grep -E 'PROGRAM TOTALS|insert_header_value|TimerManager::register_timer|select_with|AccessLog::log|Tracing::(server_span|inject_context)|malloc.c:(malloc|free) |(mi_malloc_aligned|mi_free) ' \
    | awk '{n=$1; gsub(",","",n); if (n + 0 >= 30000) { $1=""; $2=""; printf "%9.0f /request %s\n", n/3000, $0 }}' \
    | sed 's|/root/.cargo/registry/src/[^/]*/||; s| \[/.*||' > "target/profile-$name.txt"
  rm -f "$T/prof.out"
}
run() {  # run NAME PORT CMD...
  local name=$1 p=$2; shift 2
  [ "${PROFILE:-0}" = 1 ] && profile "$name" "$p" "$@"
  local i1 i2; i1=$(measure "$p" "$N1" "$@"); i2=$(measure "$p" "$N2" "$@")
  printf '%-16s %8d instructions/request\n' "$name" $(( (i2 - i1) / (N2 - N1) ))
}
P=$(port); run bare "$P" target/release/examples/bare_proxy 127.0.0.1:$P 127.0.0.1:$ORIGIN 1
A=$(port); cat > "$T/a.yaml" <<Y
server: {listen: ["127.0.0.1:$A"], threads: 1, admin: {listen: "127.0.0.1:$(port)"}}
access_log: {enabled: false}
routes: [{name: api, service: origin}]
services: {origin: {instances: ["127.0.0.1:$ORIGIN"]}}
Y
run portico-a "$A" target/release/portico run -c "$T/a.yaml"
OTLP=$(port)
python3 -c "
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0))); self.send_response(200); self.send_header('content-length','0'); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', $OTLP), H).serve_forever()" & wait_port $OTLP
portico_b() {  # portico_b NAME [SKIP]: Portico b, optionally without one feature
  local name=$1 skip=${2:-} port; port=$(port)
  {
    echo "server: {listen: [\"127.0.0.1:$port\"], threads: 1, admin: {listen: \"127.0.0.1:$(port)\"}}"
    [ "$skip" = access_log ] && echo "access_log: {enabled: false}" \
      || echo "access_log: {enabled: true, path: \"$T/access.log\"}"
    [ "$skip" = tracing ] || echo "tracing: {otlp_endpoint: \"http://127.0.0.1:$OTLP/v1/traces\", sample_ratio: 0.01}"
    if [ "$skip" = rate_limit ]; then echo "routes: [{name: api, service: origin}]"; else
      echo "rate_limits: {never: {limit: 1000000, per: 1s}}"
      echo "routes: [{name: api, service: origin, rate_limits: [never]}]"; fi
    echo "services: {origin: {instances: [\"127.0.0.1:$ORIGIN\"]}}"
    [ "$skip" = kpis ] || echo "kpis: [{name: reads, routes: [api], methods: [GET], status: 2xx}]"
  } > "$T/$name.yaml"
  run "$name" "$port" target/release/portico run -c "$T/$name.yaml"
}
portico_b portico-b
# FEATURES=1: what each feature of Portico b costs, by turning it off alone.
if [ "${FEATURES:-0}" = 1 ]; then
  for f in tracing access_log rate_limit kpis; do portico_b "b-no-$f" "$f"; done
fi
