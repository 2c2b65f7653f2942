"""Real vLLM on Ray Serve through Ray's own LLM layer: the OpenAI-compatible app (ingress + one LLMServer per model).

It takes plain `ray.serve.llm.LLMConfig` dicts and imports nothing from `harness` (like the sim app): the harness
builds those dicts from the scenario in `harness/deploy/vllm.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.serve import Application


def build_app(llm_configs: list[dict[str, Any]]) -> Application:
    """`build_openai_app` over one LLMConfig per dict. Call it connected to the target Ray cluster."""
    from ray.serve.llm import LLMConfig, build_openai_app

    return build_openai_app({"llm_configs": [LLMConfig(**c) for c in llm_configs]})
