"""Request synthesis: seeded lengths, synthetic prompts, OpenAI request bodies.

Pure (no Locust, no gevent) so the harness and the tests can import it; the locustfile uses it per request.

Token estimate: prompts are built from common lowercase English words that byte-level BPE tokenizers
(GPT-2/Llama/Qwen families) encode as one token each with their leading space, so 1 word ≈ 1 token.
The server's `usage` chunk gives the true prompt_tokens; the sampled word count is kept as `prompt_words`.
"""

from __future__ import annotations

import json
import random
from typing import Any

# ~200 short, frequent words: each is a single BPE token (with leading space) in common tokenizers.
VOCAB: tuple[str, ...] = tuple(
    """the of and to in is it you that he was for on are with as his they be at one have this from or had by
    word but what some we can out other were all there when up use your how said an each she which do their time
    if will way about many then them write would like so these her long make thing see him two has look more day
    could go come did number sound no most people my over know water than call first who may down side been now
    find any new work part take get place made live where after back little only round man year came show every
    good me give our under name very through just form great think say help low line differ turn cause much mean
    before move right boy old too same tell does set three want air well also play small end put home read hand
    port large spell add even land here must big high such follow act why ask men change went light kind off need
    house picture try us again animal point mother world near build self earth father head stand own page should
    country found answer school grow study still learn plant cover food sun four between state keep eye never last
    let thought city tree cross farm hard start might story saw far sea draw left late run while press close night
    real life few north open seem together next white children begin got walk example ease paper group always music
    those both mark often letter until mile river car feet care second book carry took science eat room friend""".split()
)


def user_rng(seed: int, worker_index: int, user_index: int) -> random.Random:
    """One RNG per simulated user: the same (seed, worker, user) replays the same request sequence."""
    # String seeds hash through SHA-512 in CPython: stable across processes and runs (unlike hash()).
    return random.Random(f"harness-load:{seed}:{worker_index}:{user_index}")


def sample_length(rng: random.Random, dist: dict[str, Any]) -> int:
    """Normal(mean, stddev), rounded and clipped to [min, max] (max optional)."""
    mean, sd = float(dist["mean"]), float(dist.get("stddev") or 0.0)
    n = round(rng.gauss(mean, sd)) if sd > 0 else round(mean)
    lo, hi = int(dist.get("min") or 1), dist.get("max")
    n = max(lo, n)
    return min(int(hi), n) if hi is not None else n


def make_prompt(rng: random.Random, n_words: int) -> str:
    """`n_words` random vocabulary words; random from the first word on, so prompts share no prefix cache blocks."""
    return " ".join(rng.choices(VOCAB, k=max(1, n_words)))


def endpoint_path(base_path: str, api: str) -> str:
    """Accept base URLs with or without a trailing /v1 (both conventions are common)."""
    base = base_path.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + ("/chat/completions" if api == "chat" else "/completions")


def build_body(
    *, api: str, model: str, prompt: str, max_tokens: int, stream: bool, ignore_eos: bool, temperature: float
) -> bytes:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": temperature, "stream": stream}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM extension; OpenAI-compatible servers that don't know it ignore it
    return json.dumps(body, separators=(",", ":")).encode()
