# One image with both binaries: `federation` (the catalog service, the
# default command) and `hub-agent` (the sidecar; run it with
# `--entrypoint hub-agent`). docker-compose.yml builds and runs it.
#
# The monitoring tests check this file against the workspace: every member
# and migrations/ copied, binary names, a non-root user.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build -----------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# make builds jemalloc, the service's allocator (tikv-jemalloc-sys).
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Cargo needs every workspace member's manifest to resolve the workspace, and
# sqlx embeds migrations/ into the binary at compile time.
COPY Cargo.toml Cargo.lock ./
# jemalloc's build-time configuration (purge freed memory within a second).
COPY .cargo .cargo
COPY protocol protocol
COPY common common
COPY routing routing
COPY service service
COPY hub-agent hub-agent
COPY testkit testkit
COPY bench bench
COPY monitoring-tests monitoring-tests
COPY migrations migrations
# The query macros' SQL, checked against the committed cache, not a database.
COPY .sqlx .sqlx
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin federation --bin hub-agent \
 && install -D -m 0755 -t /out target/release/federation target/release/hub-agent

# ---- runtime ---------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates for TLS to PostgreSQL/NATS/Keycloak; curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 federation \
 && useradd --system --uid 10001 --gid federation --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin federation \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/federation/identity /var/lib/hub-agent
# Mount points of docker-compose.yml's named volumes (the NATS authority
# `nats-init` makes, a hub agent's state): a new volume takes its owner and
# mode from the image, so the non-root user can write it.
WORKDIR /app
COPY --from=build /out/federation /out/hub-agent /usr/local/bin/
# Read from the working directory by default (config/federation.yaml, whose
# catalog.projects_file is config/projects.yaml); mount your own over them.
COPY config/federation.yaml config/projects.yaml config/
USER 10001:10001
ENV FEDERATION__LOG__FORMAT=json
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8001/ready || exit 1
ENTRYPOINT ["federation"]
CMD ["serve"]
