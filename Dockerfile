# syntax=docker/dockerfile:1
#
# clerk-bridge container image: a release build on Debian 12 (bookworm), copied onto distroless
# cc-debian12 (glibc, libgcc, CA certificates; no shell, no package manager). The binary links
# glibc dynamically, so the build and runtime stages must share one Debian release.
#
#   docker build -t clerk-bridge:0.1.0 .
#
# Base images are pinned by tag. Pin them by digest too (`image:tag@sha256:...`) when you publish:
# the digests could not be looked up where this file was written. Keep RUST_VERSION at or above
# `rust-version` in Cargo.toml.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# jemalloc (the binary's allocator) is built with make, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads: the C parts (bundled SQLite, aws-lc, jemalloc) need the image's gcc,
# and build.rs compiles proto/ with protox, so no protoc.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
# The cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ in the same step. The empty directory becomes the image's data volume, owned by
# the nonroot user (65532) so a fresh named volume is writable.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --bin clerk-bridge \
    && install -D -m 0755 target/release/clerk-bridge /out/clerk-bridge \
    && install -d -m 0750 -o 65532 -g 65532 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="clerk-bridge" \
      org.opencontainers.image.description="Verified Clerk webhooks in, a durable typed gRPC event stream out" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/clerk-bridge /usr/local/bin/clerk-bridge
COPY --from=build --chown=65532:65532 /out/data /var/lib/clerk-bridge
# Numeric (distroless' nonroot), so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
VOLUME ["/var/lib/clerk-bridge"]
# 8080: webhooks, /healthz, /readyz, /metrics. 50051: gRPC, which listens on 127.0.0.1 unless
# --grpc-addr says otherwise (off loopback it needs --grpc-token-file; see the README).
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/clerk-bridge"]
CMD ["serve", "--data-dir", "/var/lib/clerk-bridge"]
