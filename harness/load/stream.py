"""Per-request measurement: SSE line scanning (the per-token hot path) and the sample row it yields.

Pure Python (no gevent) so it is unit-testable; the locustfile feeds it lines as they arrive.

Tokens, not events: one SSE event may carry several tokens (vLLM merges pending tokens when its consumer lags;
Serve's replica batches queued messages to the proxy). With `stream_options.continuous_usage_stats` every event
carries cumulative usage, so each event's token count is the difference (vLLM, Ray Serve LLM and the sim engine
support it); otherwise the event's text is counted with the tokenizer when one is on disk, else one token per
event. Per-token ITL spreads an event's gap over the tokens it delivered; the raw gap between events is kept as
its own signal (`chunk_gap_ms`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

# A content-bearing chunk has a non-empty "content" (chat delta) or "text" (completions) string.
# `"reasoning_content"` doesn't match (the quote must open the key) and escaped quotes inside generated
# text can't form `"text"` followed by `:` + `"` with no backslash, so the regex never misfires on payload text.
_CONTENT_RE = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')
# Any generated token: content, reasoning (`reasoning_content` / `reasoning`) or a tool call; the key that matched
# first gives the event's kind (c: content or completions text, r: reasoning, t: tool call)
_ANY_TOKEN_RE = re.compile(rb'"(?:content|text|reasoning_content|reasoning)"\s*:\s*"(?!")|"tool_calls"\s*:\s*\[\s*\{')
_USAGE_RE = re.compile(rb'"usage"\s*:\s*\{')
_KIND = {b"c": "c", b"t": "c", b"r": "r"}  # second byte of the matched key: "content / "text / "reasoning
_CT_RE = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


class StreamState:
    """Accumulates one streamed response. `feed` costs a prefix check and a regex search per chunk;
    JSON is parsed only for chunks with usage (every chunk with continuous usage stats) and for chunks without
    `choices` (errors)."""

    __slots__ = (
        "token_times",
        "event_tokens",
        "event_kinds",
        "first_content",
        "usage",
        "done",
        "error",
        "_ct",
        "_error_event",
        "payloads",
        "keep_payloads",
        "_usage_payload",
    )

    def __init__(self, keep_payloads: bool = False) -> None:
        self.token_times: list[float] = []  # arrival of every event carrying a token of any kind
        self.event_tokens: list[int | None] = []  # tokens in each of those events (None: not reported)
        self.event_kinds: list[str] = []  # each event's kind: c content, r reasoning, t tool call
        self.first_content: float | None = None  # arrival of the first content (visible text) token
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.error: str | None = None
        self._ct: int | None = None  # cumulative completion tokens seen in usage so far
        self._error_event = False  # the last `event:` line named an error
        self.payloads: list[bytes] = []  # token events' payloads, for a tokenizer count when usage has none
        self.keep_payloads = keep_payloads
        self._usage_payload: bytes | None = None  # last token event with usage: parsed only if no usage chunk follows

    def feed(self, line: bytes, now: float) -> None:
        if not line.startswith(b"data:"):
            if line.startswith(b"event:") and b"error" in line:
                self._error_event = True  # an SSE `event: error`: the stream failed in band
                self.error = "stream_error"
            return  # blank separators, `: keep-alive` comments, other `event:` lines
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        m = _ANY_TOKEN_RE.search(payload)
        tok = m is not None
        if m is not None:
            self.token_times.append(now)
            self.event_tokens.append(None)
            key = m.group(0)
            kind = "t" if key[1:3] == b"to" else _KIND[key[1:2]]
            self.event_kinds.append(kind)
            if self.first_content is None and kind == "c":
                self.first_content = now
            if self.keep_payloads:
                self.payloads.append(payload)
        if tok and b'"usage"' in payload and _USAGE_RE.search(payload):
            # continuous usage stats on a token event: read the count without a JSON parse (hot path)
            m = _CT_RE.search(payload)
            if m:
                ct = int(m.group(1))
                self.event_tokens[-1] = max(ct - (self._ct or 0), 0)
                self._ct = ct
                self._usage_payload = payload
                self.usage = None  # superseded: resolved from this payload at the end unless a usage chunk follows
        elif b'"usage"' in payload and _USAGE_RE.search(payload):
            # With continuous usage stats every chunk carries usage; the last one wins (it is cumulative).
            try:
                obj = json.loads(payload)
            except ValueError:
                self.error = "bad_stream"
                return
            u = obj.get("usage") if isinstance(obj, dict) else None
            if isinstance(u, dict):
                self.usage = u
                total = u.get("completion_tokens")
                if isinstance(total, int):
                    if tok:
                        self.event_tokens[-1] = max(total - (self._ct or 0), 0)
                    self._ct = total
            if isinstance(obj, dict) and ("error" in obj or obj.get("object") == "error"):
                self.error = "stream_error"
        elif b'"choices"' not in payload:
            try:
                obj = json.loads(payload)
            except ValueError:
                self.error = "bad_stream"
                return
            if isinstance(obj, dict) and ("error" in obj or obj.get("object") == "error"):
                self.error = "stream_error"  # vLLM reports mid-stream failures as a data event

    def finish_error(self) -> str | None:
        """Error class once the body ended (None: ok)."""
        if self.usage is None and self._usage_payload is not None:  # no usage-only chunk came: the last event's
            try:
                u = json.loads(self._usage_payload).get("usage")
                self.usage = u if isinstance(u, dict) else None
            except (ValueError, AttributeError):
                pass
        if self.error:
            return self.error
        if not self.done:
            return "bad_stream"  # closed without [DONE]: truncated
        if not self.token_times:
            return "empty_stream"  # no token of any kind (content, reasoning, tool call)
        return None

    def count_with(self, count_tokens: Callable[[str], int] | None) -> str:
        """Fill unknown per-event token counts; returns where the counts came from: usage | tokenizer | events."""
        if self.event_tokens and all(k is not None for k in self.event_tokens):
            return "usage"
        if count_tokens is None or len(self.payloads) != len(self.token_times):
            return "events"
        for i, p in enumerate(self.payloads):
            if self.event_tokens[i] is None:
                self.event_tokens[i] = max(count_tokens(event_text(p)), 1)
        return "tokenizer"


def event_text(payload: bytes) -> str:
    """All generated text in one event (content, reasoning, tool-call arguments)."""
    try:
        obj = json.loads(payload)
    except ValueError:
        return ""
    out = []
    for ch in obj.get("choices") or []:
        d = ch.get("delta") or {}
        for k in ("reasoning_content", "reasoning", "content"):
            if isinstance(d.get(k), str):
                out.append(d[k])
        if isinstance(ch.get("text"), str):
            out.append(ch["text"])
        for tc in d.get("tool_calls") or []:
            fn = (tc or {}).get("function") or {}
            out += [v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str)]
    return "".join(out)


def per_token_gaps(token_times: list[float], event_tokens: list[int | None]) -> list[float]:
    """Per-token ITL (ms): each event's gap from the previous token-bearing event, spread evenly over the tokens it
    delivered (an event with 0 tokens passes its gap on). Unknown counts count as one token."""
    out: list[float] = []
    carry = 0.0
    for i in range(1, len(token_times)):
        gap = (token_times[i] - token_times[i - 1]) * 1000.0 + carry
        k = event_tokens[i] if i < len(event_tokens) else None
        if k is None:
            k = 1
        if k <= 0:
            carry = gap
            continue
        carry = 0.0
        out += [round(gap / k, 4)] * k
    return out


def build_sample(
    *,
    t_start: float,
    p_start: float,
    p_end: float,
    token_times: list[float],
    usage: dict[str, Any] | None,
    status: int,
    error: str | None,
    prompt_words: int,
    max_tokens: int,
    worker: int,
    sched_s: float | None = None,
    lateness_ms: float | None = None,
    turn: int = 0,
    event_tokens: list[int | None] | None = None,
    first_content: float | None = None,
    token_count_source: str = "events",
    event_kinds: list[str] | None = None,
    model: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """One JSONL sample from perf_counter timestamps. Derived columns (tpot, itl stats, stage, warmup)
    are computed at merge time, off the load generator's hot path."""
    tt = token_times
    ks: list[int | None] = list(event_tokens) if event_tokens is not None else [None] * len(tt)
    chunk_gaps = [round((b - a) * 1000.0, 4) for a, b in zip(tt, tt[1:])]
    itl = per_token_gaps(tt, ks)
    out_tok = usage.get("completion_tokens") if usage else None
    known = [k for k in ks if k is not None]
    by_kind = kind_tokens(ks, event_kinds or [])
    if not by_kind["r"] and usage:  # none streamed (e.g. not streamed at all): the server's count, if it has one
        by_kind["r"] = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "t_start_s": t_start,
        "ttft_ms": round((tt[0] - p_start) * 1000.0, 4) if tt else None,  # first token of any kind
        "ttft_content_ms": round((first_content - p_start) * 1000.0, 4) if first_content is not None else None,
        "e2e_ms": round((p_end - p_start) * 1000.0, 4),
        "itl_ms": itl,  # per token
        "chunk_gap_ms": chunk_gaps,  # per SSE event
        "events": len(tt),
        "multi_token_events": sum(1 for k in known if k > 1),
        "token_count_source": token_count_source if tt else None,
        "prompt_tokens": usage.get("prompt_tokens") if usage else None,
        "output_tokens": out_tok if out_tok is not None else (sum(known) + ks.count(None) if tt else 0),
        "usage_reported": usage is not None,
        "prompt_words": prompt_words,
        "max_tokens": max_tokens,
        "status": status,
        "error": error,
        "worker": worker,
        "sched_s": sched_s,  # open loop: when the request was due (epoch s); None in closed loop
        "lateness_ms": lateness_ms,  # open loop: actual send - scheduled send (generator or concurrency-cap delay)
        "turn": turn,  # index of the turn within its session (0: first or only)
        "model": model,  # the request's `model` field
        "kind": kind,  # request kind label (workload.request_kinds: plain, tools, tools-required, json_schema, ...)
        "reasoning_tokens": by_kind["r"],  # tokens of reasoning_content deltas
        "tool_call": by_kind["t"] > 0,  # the reply streamed a tool call
    }


def kind_tokens(event_tokens: Sequence[int | None], event_kinds: Sequence[str]) -> dict[str, int]:
    """Tokens per event kind (c content, r reasoning, t tool call); unknown counts count as one token."""
    out = {"c": 0, "r": 0, "t": 0}
    for k, kind in zip(event_tokens, event_kinds):
        out[kind] += 1 if k is None else k
    return out


def dropped_sample(
    *,
    sched_s: float,
    waited_ms: float,
    worker: int,
    max_tokens: int = 0,
    model: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """An open-loop arrival that was never sent (still queued at max_concurrency when the stages ended): a failed
    request at its scheduled time, so it counts in error_rate and the goodput denominator."""
    return {
        "t_start_s": sched_s,
        "ttft_ms": None,
        "ttft_content_ms": None,
        "e2e_ms": None,
        "itl_ms": [],
        "chunk_gap_ms": [],
        "events": 0,
        "multi_token_events": 0,
        "token_count_source": None,
        "prompt_tokens": None,
        "output_tokens": 0,
        "usage_reported": False,
        "prompt_words": 0,
        "max_tokens": max_tokens,
        "status": 0,
        "error": "dropped",
        "worker": worker,
        "sched_s": sched_s,
        "lateness_ms": round(waited_ms, 4),
        "turn": 0,
        "model": model,
        "kind": kind,
        "reasoning_tokens": 0,
        "tool_call": False,
    }
