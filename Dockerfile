# syntax=docker/dockerfile:1
# onevision's OpenAI-compatible server (`onevision serve`) on Debian 12 (bookworm), in two stages:
# a Rust builder that runs scripts/install-deps.sh and builds the `onevision` binary, and a slim
# runtime that holds only that binary and the shared libraries it links. docs/DEPLOYMENT.md
# tells how to build and run it.
#
#   DOCKER_BUILDKIT=1 docker build -t onevision .
#   docker run --rm -p 8000:8000 -v /srv/models:/models:ro onevision --model /models/NAME
#
# With no arguments the container serves onevision-nano, the small model built into the binary.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# The build needs FFmpeg's and libjpeg-turbo's development files and libclang (bindgen); the
# project's own script installs them, so the image builds with what CI builds with. cargo is
# already on PATH in the rust image, so the script installs no second toolchain.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
# Only what the release build reads: the workspace, its lock file, and models/onevision-nano
# (compiled into the binary by crates/onevision-cli/src/default_model.rs).
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY models models
# The registry and target/ live in BuildKit cache mounts, so a rebuild after a source change
# recompiles only the changed crates. A cache mount is not part of the layer: the binary is
# copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p onevision-cli --locked \
 && cp target/release/onevision /usr/local/bin/onevision

FROM ${RUNTIME_IMAGE}
# The shared libraries the binary links (`readelf -d target/release/onevision`, NEEDED), mapped
# to their bookworm packages with `dpkg -S`: libavcodec.so.59 -> libavcodec59, libavformat.so.59
# -> libavformat59, libavutil.so.57 -> libavutil57, libswscale.so.6 -> libswscale6,
# libturbojpeg.so.0 -> libturbojpeg0; libgcc_s, libm and libc are in the base image. apt pulls in
# the libraries those link in turn. ca-certificates: the system roots for --allow-remote-media.
# The package names fix the ABI (the soname is in the name), so versions are not pinned: a
# rebuild takes bookworm's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libavcodec59 libavformat59 libavutil57 libswscale6 libturbojpeg0 \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
RUN groupadd --gid 10001 onevision \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/onevision \
      --shell /usr/sbin/nologin onevision
COPY --from=builder /usr/local/bin/onevision /usr/local/bin/onevision
USER 10001:10001
WORKDIR /home/onevision
EXPOSE 8000
# The slim image has no curl: bash's /dev/tcp sends the request. The server listens only once the
# model is loaded, which can take minutes for a large checkpoint, hence the long start period.
# Kubernetes ignores this and uses the probes in deploy/kubernetes/deployment.yaml.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# --host and --port are fixed here (each may be given once); publish another host port with
# `-p 9000:8000`. Arguments after the image name are appended: `--model /models/NAME ...`.
ENTRYPOINT ["onevision", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []
