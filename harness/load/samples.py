"""Sample files: incremental tail-reading (live progress) and the final merge into samples.parquet."""

from __future__ import annotations

import json
import math
import statistics
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.load.shape import stage_label

SAMPLE_GLOB = "samples-*.jsonl"

SCHEMA = pa.schema(
    [
        ("t_start_s", pa.float64()),
        ("ttft_ms", pa.float64()),
        ("e2e_ms", pa.float64()),
        ("tpot_ms", pa.float64()),
        ("itl_ms", pa.list_(pa.float64())),
        ("itl_count", pa.int32()),
        ("itl_mean_ms", pa.float64()),
        ("itl_p50_ms", pa.float64()),
        ("itl_max_ms", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("usage_reported", pa.bool_()),
        ("prompt_words", pa.int64()),
        ("max_tokens", pa.int64()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("ok", pa.bool_()),
        ("stage", pa.string()),
        ("warmup", pa.bool_()),
        ("worker", pa.int64()),
        ("sched_s", pa.float64()),
        ("lateness_ms", pa.float64()),
        ("turn", pa.int32()),
        ("cooldown", pa.bool_()),
        ("ttft_content_ms", pa.float64()),  # first content (visible text) token; ttft_ms: first token of any kind
        ("ttft_sched_ms", pa.float64()),  # open loop: from the scheduled arrival (coordinated omission corrected)
        ("e2e_sched_ms", pa.float64()),
        ("chunk_gap_ms", pa.list_(pa.float64())),  # gaps between SSE events (itl_ms: per token)
        ("events", pa.int32()),  # token-bearing SSE events
        ("multi_token_events", pa.int32()),  # events that carried more than one token
        ("token_count_source", pa.string()),  # usage | tokenizer | events (one token per event assumed)
        ("model", pa.string()),  # the request's `model` (None in sample files older than multi-model runs)
        ("kind", pa.string()),  # request kind label: plain | tools | tools-<tool_choice> | json_schema | its name
        ("reasoning_tokens", pa.int64()),  # tokens streamed as reasoning_content
        ("tool_call", pa.bool_()),  # the reply carried a tool call
        ("images", pa.int32()),  # workload.images: images sent with the request (None: no image workload)
        ("request_bytes", pa.int64()),  # workload.images: bytes of the request body sent
        ("image_tokens", pa.int64()),  # prompt tokens the server counted for the images (usage), if it says
    ]
)


class SampleTail:
    """Reads only the bytes appended since the last poll; a partial last line waits for the next poll."""

    def __init__(self, samples_dir: Path) -> None:
        self.dir = samples_dir
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}

    def poll(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for p in sorted(self.dir.glob(SAMPLE_GLOB)):
            off = self._offsets.get(p, 0)
            try:
                with open(p, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                continue
            if not data:
                continue
            self._offsets[p] = off + len(data)
            data = self._partial.pop(p, b"") + data
            *lines, rest = data.split(b"\n")
            if rest:
                self._partial[p] = rest
            for ln in lines:
                if ln:
                    try:
                        rows.append(json.loads(ln))
                    except ValueError:
                        pass  # never expected: writers emit whole lines
        return rows


def _pct(sorted_vals: Sequence[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


class Progress:
    """Running totals for on_progress: counts over the whole run, rps and TTFT percentiles over a recent window
    (by completion time ≈ t_start + e2e) so the live view follows stage changes."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.requests = 0
        self.errors = 0
        self._recent: deque[tuple[float, float | None]] = deque()  # (completed_at, ttft_ms)

    def add(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self.requests += 1
            if r.get("error") is not None:
                self.errors += 1
            self._recent.append((r["t_start_s"] + (r.get("e2e_ms") or 0.0) / 1000.0, r.get("ttft_ms")))

    def snapshot(self, now: float) -> dict[str, Any]:
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()
        ttfts = sorted(t for _, t in self._recent if t is not None)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(len(self._recent) / self.window_s, 3),
            "ttft_p50_ms": _pct(ttfts, 0.50),
            "ttft_p95_ms": _pct(ttfts, 0.95),
        }


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one sample file; a torn last line (writer killed mid-write) is skipped."""
    with open(path, "rb") as f:
        for ln in f:
            if not ln.endswith(b"\n"):
                break
            try:
                yield json.loads(ln)
            except ValueError:
                continue


def derive(
    r: dict[str, Any],
    *,
    started_at: float,
    warmup_end: float,
    names: Sequence[str],
    ends: Sequence[float],
    cooldown_start: float = math.inf,
) -> dict[str, Any]:
    """Final parquet row from a raw JSONL sample."""
    itl = r.get("itl_ms") or []
    n_out = r.get("output_tokens")
    ttft, e2e = r.get("ttft_ms"), r.get("e2e_ms")
    tpot = (
        (e2e - ttft) / (n_out - 1)
        if ttft is not None and e2e is not None and n_out is not None and n_out >= 2
        else None
    )
    late = r.get("lateness_ms")
    return {
        "t_start_s": r["t_start_s"],
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "tpot_ms": tpot,
        "itl_ms": itl,
        "itl_count": len(itl),
        "itl_mean_ms": sum(itl) / len(itl) if itl else None,
        "itl_p50_ms": statistics.median(itl) if itl else None,
        "itl_max_ms": max(itl) if itl else None,
        "prompt_tokens": r.get("prompt_tokens"),
        "output_tokens": n_out,
        "usage_reported": bool(r.get("usage_reported")),
        "prompt_words": r.get("prompt_words"),
        "max_tokens": r.get("max_tokens"),
        "status": r.get("status", 0),
        "error": r.get("error"),
        "ok": r.get("error") is None,
        "stage": stage_label(names, ends, r["t_start_s"] - started_at),
        "warmup": r["t_start_s"] < warmup_end,
        "worker": r.get("worker"),
        "sched_s": r.get("sched_s"),
        "lateness_ms": r.get("lateness_ms"),
        "turn": r.get("turn") or 0,
        "cooldown": r["t_start_s"] >= cooldown_start,
        "ttft_content_ms": r.get("ttft_content_ms"),
        # from the scheduled arrival; a request without a schedule (a later turn of a session, closed loop) was
        # due when sent. A dropped arrival waited `lateness_ms` and was never answered.
        "ttft_sched_ms": None if ttft is None else ttft + (late or 0.0),
        "e2e_sched_ms": (e2e + (late or 0.0)) if e2e is not None else late,
        "chunk_gap_ms": r.get("chunk_gap_ms", itl),  # older sample files: the recorded gaps were per event
        "events": r.get("events"),
        "multi_token_events": r.get("multi_token_events"),
        "token_count_source": r.get("token_count_source"),
        "model": r.get("model"),
        "kind": r.get("kind"),
        "reasoning_tokens": r.get("reasoning_tokens"),
        "tool_call": r.get("tool_call"),
        "images": r.get("images"),
        "request_bytes": r.get("request_bytes"),
        "image_tokens": r.get("image_tokens"),
    }


def merge_samples(
    samples_dir: Path,
    out_path: Path,
    *,
    started_at: float,
    warmup_s: float,
    stage_names: Sequence[str],
    stage_ends: Sequence[float],
    batch_rows: int = 20_000,
    cooldown_s: float = 0.0,
    stop_at: float | None = None,
) -> tuple[int, int]:
    """Stream every samples-*.jsonl into one Parquet file in bounded memory (row groups of `batch_rows`).
    Rows are grouped by worker file, each in completion order (sort on t_start_s when order matters).
    Returns (rows, errors)."""
    warmup_end = started_at + warmup_s
    # past the last stage (or in its cooldown) nothing counts: a request started in the drain is not in the window
    cooldown_start = started_at + stage_ends[-1] - max(cooldown_s, 0.0) if stage_ends else math.inf
    if stop_at is not None:  # load.stop_when fired: requests sent after the stop request (before it took) don't count
        cooldown_start = min(cooldown_start, stop_at)
    tmp = out_path.with_suffix(".parquet.tmp")
    n = errs = 0
    with pq.ParquetWriter(tmp, SCHEMA) as w:
        batch: list[dict[str, Any]] = []
        for p in sorted(samples_dir.glob(SAMPLE_GLOB)):
            for r in read_jsonl(p):
                d = derive(
                    r,
                    started_at=started_at,
                    warmup_end=warmup_end,
                    names=stage_names,
                    ends=stage_ends,
                    cooldown_start=cooldown_start,
                )
                batch.append(d)
                n += 1
                errs += not d["ok"]
                if len(batch) >= batch_rows:
                    w.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
                    batch = []
        if batch or n == 0:
            w.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
    tmp.replace(out_path)  # atomic: a reader never sees a half-written samples.parquet
    return n, errs
