# One image recipe for the four services; the build argument SERVICE picks which one:
#   docker build --build-arg SERVICE=auth-service -t microservices-nats/auth-service .
# (the broker has its own: nats-server/Dockerfile). docker-compose.yml builds all five.
#
# Build arguments:
#   SERVICE       auth-service | notification-service | data-processing-service | analytics-service (required)
#   SWIFT_IMAGE   toolchain image of the build stage (default: the Swift release the repository is tested with)
#   RUNTIME_IMAGE slim image the binary runs on; must have the build image's glibc (bookworm with bookworm)

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build stage ---------------------------------------------------------------------------
FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
# OpenSSL's headers and libraries for the COpenSSL target (ed25519 of nkeys); the same layer in both
# Dockerfiles, so the shared build stage stays one cache entry.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev \
 && rm -rf /var/lib/apt/lists/*
# The manifest names every target, test targets included, so their folders must be present.
# .dockerignore keeps build folders and local data out.
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
# Every product at once, before SERVICE is declared: up to here the stage is the same for the four
# service images and for nats-server/Dockerfile's, so the compilation runs once and the other images
# take it from the build cache instead of compiling the shared modules again.
# The Swift standard library and Foundation are linked in statically: the runtime image needs no
# Swift runtime, only glibc and libstdc++ (both in debian:bookworm-slim) and OpenSSL (libssl3).
RUN swift build -c release --static-swift-stdlib
ARG SERVICE
# The binary is stripped: symbols are a fifth of its size and nothing in the container reads them.
RUN case "$SERVICE" in \
      auth-service) port=8081 ;; \
      notification-service) port=8082 ;; \
      data-processing-service) port=8083 ;; \
      analytics-service) port=8084 ;; \
      *) echo "build argument SERVICE must be auth-service, notification-service, data-processing-service or analytics-service (got '$SERVICE')" >&2; exit 1 ;; \
    esac \
 && install -D "$(swift build -c release --show-bin-path)/$SERVICE" "/out/usr/local/bin/$SERVICE" \
 && strip --strip-all "/out/usr/local/bin/$SERVICE" \
 && ln -s "$SERVICE" /out/usr/local/bin/service \
 && mkdir -p /out/etc \
 && echo "$port" > /out/etc/service-http-port

# --- runtime stage -------------------------------------------------------------------------
# No ARG here: this stage is the same for every SERVICE up to the COPY, so its layers are built
# once and shared by the four images.
FROM ${RUNTIME_IMAGE}
# curl for the health check, and libssl3 (OpenSSL's libcrypto, which signs nkey logins): the
# binary needs only those, glibc and libstdc++.
# The service runs as the unprivileged user "app" (uid 10001); /data is its own, so a named
# volume mounted there starts out owned by it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libssl3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir -p /data \
 && chown app:app /data \
 && printf '%s\n' '#!/bin/sh' \
      '# Exit 0 when the service answers GET /healthz on its HTTP port (HTTP_PORT, else its default).' \
      'port="${HTTP_PORT:-$(cat /etc/service-http-port)}"' \
      'exec curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${port}/healthz"' \
      > /usr/local/bin/healthcheck \
 && chmod 0755 /usr/local/bin/healthcheck
COPY --from=build /out/ /
# Every service keeps its durable state under DATA_DIR; NATS_URL, JWT_SECRET, HTTP_PORT and
# LOG_LEVEL come from the environment (see docker-compose.yml).
ENV DATA_DIR=/data
WORKDIR /data
VOLUME ["/data"]
USER app
EXPOSE 8081 8082 8083 8084
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["healthcheck"]
# SIGTERM (docker stop) drains NATS, flushes the store and exits 0 within 20 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/service"]
