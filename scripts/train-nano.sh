#!/usr/bin/env bash
# onevision-nano from nothing: the procedural world, the model's own tokenizer and initial
# weights, the unimodal pretraining of its two halves, then the paper's stages 1, 1.5, 2-SI and
# 2-OV with `onevision train`, each checkpoint graded on the held-out test split with
# `onevision eval`. Every stage's checkpoint stays in $OUT. See docs/NANO.md.
#
#   scripts/train-nano.sh                 # the shipped model's run (about 2 hours on 2 cores)
#   OUT=/tmp/nano SCALE=0.5 scripts/train-nano.sh   # every sample count halved
#   SIZE=micro SCALE=0.01 scripts/train-nano.sh     # the smoke run the tests make (seconds)
#
# Environment: OUT (out/nano), ONEVISION (the binary; built in release when unset), SIZE
# (default|micro: the model's shape), SCALE (1: multiplies every sample count), SEED (1),
# EVAL_LIMIT (documents per family for the early stages' grades; 50), VISION_STEPS (3000: the
# dense vision pretraining's steps of 16 images, before SCALE), TEST_COUNT (the test split's
# samples; 3600 = 200 per family, scaled with SCALE unless set). A rerun with the same OUT
# skips the steps already done (an interrupted run continues).
set -euo pipefail

OUT=${OUT:-out/nano}
SIZE=${SIZE:-default}
SCALE=${SCALE:-1}
SEED=${SEED:-1}
EVAL_LIMIT=${EVAL_LIMIT:-50}
VISION_STEPS=${VISION_STEPS:-3000}
cd "$(dirname "$0")/.."
if [ -z "${ONEVISION:-}" ]; then
  cargo build --release -q -p onevision-cli
  ONEVISION=target/release/onevision
fi
ov() { "$ONEVISION" "$@"; }
n() { # a sample count, scaled, at least 2
  awk -v a="$1" -v s="$SCALE" 'BEGIN { v = int(a * s + 0.5); if (v < 2) v = 2; print v }'
}
stamp() { date +%s; }
mkdir -p "$OUT"
TIMES="$OUT/times.tsv"
[ -f "$TIMES" ] || echo -e "step\tseconds" > "$TIMES"
timed() { # timed NAME command...: runs it and records its wall time; a step already done in
  # $OUT (a rerun after an interruption) is skipped
  local name=$1 t0
  shift
  if [ -f "$OUT/.done-$name" ]; then
    echo "== $name: done before, skipped"
    return
  fi
  t0=$(stamp)
  echo "== $name: $*"
  "$@"
  echo -e "$name\t$(( $(stamp) - t0 ))" >> "$TIMES"
  touch "$OUT/.done-$name"
}

W="$OUT/world"
# 18 families take turns, so 36000 samples are 2000 per family; the test split has 200 per family.
timed world-train ov world --out "$W" --split train --seed "$SEED" --count "$(n 36000)"
TEST_COUNT=${TEST_COUNT:-$(( $(n 3600) < 36 ? 36 : $(n 3600) ))}
timed world-test ov world --out "$W" --split test --seed "$SEED" --count "$TEST_COUNT"
timed families ov nano families --data "$W/train.json"
timed text ov nano text --out "$W/text.json" --seed "$SEED" --count "$(n 12000)"

# The model: its tokenizer is trained over the world's text.
timed init ov nano init --out "$OUT/init" --world "$W/train.json" --size "$SIZE" --seed "$SEED"

# Unimodal pretraining. The language model on the world told in words (each scene's
# description, then a question and its answer); the vision tower on its own with a dense,
# placed objective: each half-patch of every AnyRes view predicts the shape, color, size, glyph
# and object center under it (and its 3x3 position on the base tile), on train-split world
# images drawn on the fly. (`onevision nano pretrain-vision`, SigLIP's sigmoid image-text loss
# on the captions, is the other choice; the first run used it and its tower saw no shapes.)
timed lm ov train --model "$OUT/init" --data "$W/text.json" --output "$OUT/lm" \
  --tunable-parts language --lr 1e-3 --batch-size 16 --warmup-ratio 0.03 --no-progress
timed vision ov nano pretrain-dense --model "$OUT/lm" --output "$OUT/unimodal" \
  --steps "$(n "$VISION_STEPS")" --batch-size 16 --lr 3e-3 --seed "$SEED"

mix() { # mix FILE family:strategy ...: a LLaVA-NeXT mixture of the world's families
  local file=$1
  shift
  echo "datasets:" > "$file"
  for e in "$@"; do
    printf '  - json_path: train-%s.json\n    sampling_strategy: %s\n' "${e%%:*}" "${e#*:}" >> "$file"
  done
}
first() { echo "first:$(n "$1")"; }

# Stage 1: the projector alone on captions (the paper's lr 1e-3).
mix "$W/stage1.yaml" "caption:$(first 2000)"
timed stage1 ov train --stage 1 --model "$OUT/unimodal" --data "$W/stage1.yaml" --image-folder "$W" \
  --output "$OUT/stage1" --batch-size 8 --no-progress

# Stage 1.5: the whole model on detailed descriptions and text reading. A model trained from
# nothing needs larger steps than the paper's 1e-5 for pretrained halves; the vision tower's
# rate stays 5x smaller, as in the paper.
LR=5e-4
VLR=1e-4
mix "$W/stage1.5.yaml" "detail:$(first 2000)" "ocr_word:$(first 2000)" "ocr_number:$(first 2000)"
timed stage1.5 ov train --stage 1.5 --model "$OUT/stage1" --data "$W/stage1.5.yaml" --image-folder "$W" \
  --output "$OUT/stage1.5" --lr $LR --vision-lr $VLR --projector-lr $LR --batch-size 8 --no-progress

# Stage 2, single image: every single-image family; never a multi-image set or a video.
SI=(caption detail color shape count position choice ocr_word ocr_number chart_value chart_max)
si=()
for f in "${SI[@]}"; do si+=("$f:$(first 2000)"); done
mix "$W/stage2-si.yaml" "${si[@]}"
timed stage2-si ov train --stage 2-si --model "$OUT/stage1.5" --data "$W/stage2-si.yaml" --image-folder "$W" \
  --output "$OUT/stage2-si" --lr $LR --vision-lr $VLR --projector-lr $LR --batch-size 8 --no-progress

# Stage 2, OneVision: single-image replay, multi-image sets and videos.
ov_=()
for f in "${SI[@]}"; do ov_+=("$f:end:$(n 600)"); done
for f in multi_differs multi_count multi_changed video_direction video_color video_appear video_order; do
  ov_+=("$f:$(first 2000)")
done
mix "$W/stage2-ov.yaml" "${ov_[@]}"
timed stage2-ov ov train --stage 2-ov --model "$OUT/stage2-si" --data "$W/stage2-ov.yaml" --image-folder "$W" \
  --video-folder "$W" --output "$OUT/stage2-ov" --lr $LR --vision-lr $VLR --projector-lr $LR --batch-size 8 \
  --no-progress

# Grades on the held-out test split, per family: the early stages on EVAL_LIMIT documents per
# family, the two stage-2 checkpoints (the transfer table) on all of them.
for s in stage1 stage1.5; do
  timed "eval-$s" ov eval --model "$OUT/$s" --tasks "$W/test.json" --output "$OUT/eval/$s" \
    --limit "$EVAL_LIMIT" --no-progress
done
for s in stage2-si stage2-ov; do
  timed "eval-$s" ov eval --model "$OUT/$s" --tasks "$W/test.json" --output "$OUT/eval/$s" --no-progress
done
echo "== times (s)"
cat "$TIMES"
