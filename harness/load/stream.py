"""Per-request measurement: SSE line scanning (the per-token hot path) and the sample row it yields.

Pure Python (no gevent) so it is unit-testable; the locustfile feeds it lines as they arrive.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A content-bearing chunk has a non-empty "content" (chat delta) or "text" (completions) string.
# `"reasoning_content"` doesn't match (the quote must open the key) and escaped quotes inside generated
# text can't form `"text"` followed by `:` + `"` with no backslash, so the regex never misfires on payload text.
_CONTENT_RE = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')
_USAGE_RE = re.compile(rb'"usage"\s*:\s*\{')


class StreamState:
    """Accumulates one streamed response. `feed` costs a prefix check and a regex search per chunk;
    JSON is parsed only for the usage chunk and for chunks without `choices` (errors)."""

    __slots__ = ("token_times", "usage", "done", "error")

    def __init__(self) -> None:
        self.token_times: list[float] = []
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.error: str | None = None

    def feed(self, line: bytes, now: float) -> None:
        if not line.startswith(b"data:"):
            return  # blank separators, `: keep-alive` comments, `event:` lines
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        if _CONTENT_RE.search(payload):
            self.token_times.append(now)
        if b'"usage"' in payload and _USAGE_RE.search(payload):
            # With continuous usage stats every chunk carries usage; the last one wins (it is cumulative).
            try:
                u = json.loads(payload).get("usage")
            except ValueError:
                self.error = "bad_stream"
                return
            if isinstance(u, dict):
                self.usage = u
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
        if self.error:
            return self.error
        if not self.done:
            return "bad_stream"  # closed without [DONE]: truncated
        if not self.token_times:
            return "empty_stream"
        return None


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
) -> dict[str, Any]:
    """One JSONL sample from perf_counter timestamps. Derived columns (tpot, itl stats, stage, warmup)
    are computed at merge time, off the load generator's hot path."""
    tt = token_times
    itl = [round((b - a) * 1000.0, 4) for a, b in zip(tt, tt[1:])]
    out_tok = usage.get("completion_tokens") if usage else None
    return {
        "t_start_s": t_start,
        "ttft_ms": round((tt[0] - p_start) * 1000.0, 4) if tt else None,
        "e2e_ms": round((p_end - p_start) * 1000.0, 4),
        "itl_ms": itl,
        "prompt_tokens": usage.get("prompt_tokens") if usage else None,
        "output_tokens": out_tok if out_tok is not None else len(tt),
        "usage_reported": usage is not None,
        "prompt_words": prompt_words,
        "max_tokens": max_tokens,
        "status": status,
        "error": error,
        "worker": worker,
        "sched_s": sched_s,  # open loop: when the request was due (epoch s); None in closed loop
        "lateness_ms": lateness_ms,  # open loop: actual send - scheduled send (generator or concurrency-cap delay)
        "turn": turn,  # index of the turn within its session (0: first or only)
    }
