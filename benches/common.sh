# Shared by the shell benchmarks (sourced, from the repository root): builds the release
# binaries, makes $T (a scratch directory removed on exit, with every background job killed),
# and defines port (a free loopback port) and wait_port PORT [TENTHS] (until it accepts; the
# default 200 tenths of a second).
cargo build --release --bins --examples -q
T=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq "${2:-200}"); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; exit 1; }
