#!/usr/bin/env bash
# Fresh machine -> the main job: accelerate the bundled reference model with its shipped recipe and print the
# measured speedup and quality difference. Extra arguments go to `autoaccel demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e .
exec .venv/bin/autoaccel demo "$@"
