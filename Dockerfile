# syntax=docker/dockerfile:1
#
# Portico container image: build with `docker build -t portico .` from the repository root.
#
#   docker run --rm -p 8080:8080 -p 9901:9901 portico run --demo     # no files needed
#   docker run --rm -p 8080:8080 -p 9901:9901 \
#     -v "$PWD/my-portico.yaml:/etc/portico/portico.yaml:ro" portico    # your configuration
#
# The configuration is read from /etc/portico/portico.yaml (the image carries the documented
# example conf/portico.yaml there; mount your own file over it). In a container, listen on
# 0.0.0.0:8080 and put the admin listener on 0.0.0.0:9901 so probes and Prometheus reach it.
# Ports: 8080 = proxy (server.listen), 9901 = admin (/healthz, /readyz, /metrics, /admin/*).

############################ builder ############################
FROM rust:1-bookworm AS builder

# The rust image already has gcc, make and binutils; Pingora's native dependencies also need cmake
# (as in .ci/run).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependency layer: build every dependency against stub sources, so that changing Portico's own
# code does not rebuild them. Cargo.toml names the benches, so they need stubs too.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/ratelimit.rs \
 && echo 'fn main() {}' > benches/hot_path.rs \
 && cargo build --release --locked \
 && rm -rf src benches

# The real sources. COPY keeps the files' modification times, which can be older than the stubs',
# so touch the crate roots to make cargo rebuild Portico itself.
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && strip --strip-debug target/release/portico \
 && ./target/release/portico version

############################ runtime ############################
FROM debian:bookworm-slim

# The binary needs only glibc (and libgcc_s, part of every Debian image); ca-certificates is for
# https OTLP endpoints.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify the user without a passwd lookup.
RUN groupadd --system --gid 10001 portico \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin portico

COPY --from=builder /src/target/release/portico /usr/local/bin/portico
COPY conf/portico.yaml /etc/portico/portico.yaml

# `portico run --demo` inside a container: listeners on all interfaces.
ENV PORTICO_DEMO_LISTEN=0.0.0.0:8080 \
    PORTICO_DEMO_ADMIN=0.0.0.0:9901

USER 10001:10001
EXPOSE 8080 9901

# Pingora shuts down gracefully on SIGTERM: it stops accepting, lets in-flight requests run for
# server.grace_period, then stops within server.shutdown_timeout. Give `docker stop` at least
# their sum (docker stop -t / compose stop_grace_period).
STOPSIGNAL SIGTERM

# Liveness from the admin listener. bookworm-slim has no curl or wget; rather than adding curl
# (and libcurl with its TLS and protocol libraries, several MB and more CVEs to track) for one
# probe, the check speaks HTTP itself through bash's /dev/tcp (bash is an essential package of
# every Debian image). It needs the admin listener on 127.0.0.1 or 0.0.0.0 port 9901.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 _ status _ <&3 && [ \"$status\" = 200 ]"]

ENTRYPOINT ["portico"]
CMD ["run", "-c", "/etc/portico/portico.yaml"]
