#!/usr/bin/env bash
# Creates the reference venv for the evaluation fixtures: lmms-eval 0.2.1 (= the v0.2.2 tag the
# paper used) and lm_eval (whose exact_match_hf_evaluate is the HF `evaluate` exact_match that
# lmms-eval loads from the Hub), without their heavy dependencies. Usage: setup_venv.sh [DIR]
set -euo pipefail
venv="${1:-/opt/lmms-venv}"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --no-deps -r "$here/requirements.txt"
echo "reference venv ready: $venv/bin/python"
