#!/usr/bin/env bash
# Installs what building and testing onevision needs on Debian/Ubuntu: a C toolchain, pkg-config,
# FFmpeg's libraries (video decoding) with libclang (their Rust bindings are generated at build
# time) and libjpeg-turbo (JPEG decoding identical to Pillow's) from apt, and a Rust toolchain
# (rustup) when cargo is missing. Idempotent and quiet when everything is already there.
set -euo pipefail

need=()
for pkg in build-essential pkg-config ca-certificates curl libclang-dev \
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libturbojpeg0-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    :
  else
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
fi
