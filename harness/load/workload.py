"""Request synthesis: seeded lengths, synthetic prompts, OpenAI request bodies.

Pure (no Locust, no gevent) so the harness and the tests can import it; the locustfile uses it per request.

Token estimate: prompts are built from common lowercase English words that byte-level BPE tokenizers
(GPT-2/Llama/Qwen families) encode as one token each with their leading space, so 1 word ≈ 1 token.
The server's `usage` chunk gives the true prompt_tokens; the sampled word count is kept as `prompt_words`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
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
    those both mark often letter until mile river car feet care second book carry took science eat room
    friend""".split()
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


def make_prompt(rng: random.Random, n_words: int, vocab: Sequence[str] = VOCAB) -> str:
    """`n_words` random vocabulary words; random from the first word on, so prompts share no prefix cache blocks.
    With a vocabulary of words that are one token each (harness.load.prepare), the prompt is exactly n tokens."""
    return " ".join(rng.choices(vocab, k=max(1, n_words)))


class Session:
    """One conversation: turns are produced one at a time; `reply(n)` appends the answer of the last turn.
    A single-prompt request is a session of one turn. `prompt_len` counts every message sent in that turn."""

    __slots__ = ("_turns", "_i", "_rng", "_vocab", "_w", "_history", "_hist_len", "_pending")

    def __init__(self, turns: list[dict[str, Any]] | int, rng: random.Random, vocab: Sequence[str], w: dict[str, Any]):
        self._turns, self._i, self._rng, self._vocab, self._w = turns, 0, rng, vocab, w
        self._history: list[dict[str, str]] = []
        self._hist_len = 0
        self._pending: dict[str, Any] | None = None

    def next_turn(self) -> tuple[list[dict[str, str]], int, int, int] | None:
        """(messages, max_tokens, prompt_len, turn index) of the next turn, or None when the session is over."""
        n_turns = self._turns if isinstance(self._turns, int) else len(self._turns)
        if self._i >= n_turns:
            return None
        t: dict[str, Any]
        if isinstance(self._turns, int):  # synthetic
            n = sample_length(self._rng, self._w["prompt_tokens"])
            t = {
                "user": make_prompt(self._rng, n, self._vocab),
                "prompt_len": n,
                "max_tokens": sample_length(self._rng, self._w["output_tokens"]),
                "assistant": None,
            }
        else:
            t = self._turns[self._i]
        self._pending = t
        msgs = [*self._history, {"role": "user", "content": t["user"]}]
        turn = self._i
        self._i += 1
        return msgs, int(t["max_tokens"]), self._hist_len + int(t["prompt_len"]), turn

    def reply(self, n_tokens: int) -> None:
        """Record the answer of the turn just sent: the dataset's answer if it has one, else n_tokens words."""
        t = self._pending
        if t is None:
            return
        self._pending = None
        if self._i >= (self._turns if isinstance(self._turns, int) else len(self._turns)):
            return  # last turn: no history needed
        answer = t.get("assistant")
        a_len = int(t.get("assistant_len") or 0)
        if answer is None:
            a_len = max(1, n_tokens)
            answer = make_prompt(self._rng, a_len, self._vocab)
        self._history += [{"role": "user", "content": t["user"]}, {"role": "assistant", "content": answer}]
        self._hist_len += int(t["prompt_len"]) + a_len


class RequestSource:
    """Where prompts come from: synthetic (optionally multi-turn) or a prepared pool (dataset, shared prefix).
    Pool items are {"turns": [{"user", "assistant", "assistant_len", "prompt_len", "max_tokens"}, ...]}."""

    def __init__(self, w: dict[str, Any], vocab: Sequence[str] | None = None, pool: list[dict[str, Any]] | None = None):
        self.w = w
        self.vocab = tuple(vocab) if vocab else VOCAB
        self.pool = pool

    def session(self, rng: random.Random) -> Session:
        if self.pool:
            return Session(rng.choice(self.pool)["turns"], rng, self.vocab, self.w)
        return Session(int(self.w.get("session_turns") or 1), rng, self.vocab, self.w)


class RequestMix:
    """Which model and request kind each request gets: seeded weighted picks (workload.models, request_kinds).

    A trace row's own `model` wins when workload.models is not set (the trace's model column)."""

    def __init__(self, default_model: str, models: dict[str, float] | None, kinds: list[dict[str, Any]] | None):
        self.default = default_model
        self.models = list((models or {default_model: 1.0}).items())
        self.kinds = kinds or [{"kind": "plain", "weight": 1.0, "fields": {}}]
        self.follow_trace = models is None

    def pick(self, rng: random.Random, row_model: str | None = None) -> tuple[str, str, dict[str, Any]]:
        """(model, kind, extra body fields). Draws from `rng` only where there is a choice."""
        if row_model is not None and self.follow_trace:
            model = row_model
        elif len(self.models) == 1:
            model = self.models[0][0]
        else:
            model = rng.choices([m for m, _ in self.models], [w for _, w in self.models])[0]
        k = self.kinds[0] if len(self.kinds) == 1 else rng.choices(self.kinds, [k["weight"] for k in self.kinds])[0]
        return model, k["kind"], k["fields"]


def endpoint_path(base_path: str, api: str) -> str:
    """Accept base URLs with or without a trailing /v1 (both conventions are common)."""
    base = base_path.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + ("/chat/completions" if api == "chat" else "/completions")


def build_body(
    *,
    api: str,
    model: str,
    prompt: str = "",
    max_tokens: int,
    stream: bool,
    ignore_eos: bool,
    temperature: float,
    messages: list[dict[str, str]] | None = None,
    continuous_usage: bool = False,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """`messages` (a conversation) wins over `prompt`; for the completions API they are joined with newlines.
    `extra`: the request kind's fields (tools, tool_choice, response_format)."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": temperature, "stream": stream}
    if extra:
        body.update(extra)
    if api == "chat":
        body["messages"] = messages if messages is not None else [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = "\n".join(m["content"] for m in messages) if messages is not None else prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
        if continuous_usage:  # usage in every event: how many tokens each one carried (vLLM, Ray Serve LLM, sim)
            body["stream_options"]["continuous_usage_stats"] = True
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM extension; OpenAI-compatible servers that don't know it ignore it
    return json.dumps(body, separators=(",", ":")).encode()
