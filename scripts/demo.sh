#!/usr/bin/env bash
# Fresh machine -> the main job: accelerate the bundled reference model with its shipped recipe and print the
# measured speedup and quality difference. Extra arguments go to `autoaccel demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e .
# LPIPS weights: users download them once automatically; offline development machines may use the copy beside the
# repository (optional: without any weights the demo reports PSNR and SSIM only).
shared=../shared/weights/lpips_alex_v0.1.safetensors
if [ -z "${AUTOACCEL_LPIPS_WEIGHTS:-}" ] && [ -f "$shared" ]; then export AUTOACCEL_LPIPS_WEIGHTS="$PWD/$shared"; fi
exec .venv/bin/autoaccel demo "$@"
