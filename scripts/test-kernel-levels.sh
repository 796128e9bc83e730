#!/usr/bin/env bash
# The parity tests again at every lower CPU kernel level this machine runs, forced through
# ONEVISION_CPU_KERNELS, so that the AVX2 and the reference paths are checked on an AVX-512
# machine too (the default run tests the highest level; onevision-nn's own kernel tests go
# through every level in one run). Run by .ci/run after `cargo test --release --workspace`.
#
#   scripts/test-kernel-levels.sh            # every lower level
#   scripts/test-kernel-levels.sh avx2       # just these
#
# The tests: the model core against transformers (f32 logits, bf16/f16 top-1) and its
# invariants, the training gradients against torch, and `onevision generate` end to end against
# transformers' greedy tokens.
set -euo pipefail
cd "$(dirname "$0")/.."

has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
if [ $# -gt 0 ]; then
  levels=("$@")
else
  levels=()
  if [ "$(uname -m)" = x86_64 ] && has avx2 && has fma && has f16c; then
    # The default run already tested avx2 on a machine without AVX-512.
    if has avx512f && has avx512bw; then levels+=(avx2); fi
    levels+=(reference)
  fi
  # Elsewhere (aarch64) the reference level is the only one and the default run tested it.
fi

for level in "${levels[@]}"; do
  echo "== CPU kernel level $level"
  export ONEVISION_CPU_KERNELS=$level
  # --workspace, as the default run builds: the same features, so nothing is rebuilt.
  cargo test --release -q --workspace --test transformers_parity --test invariants --test grads \
    --test generate
done
