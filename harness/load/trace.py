"""Request traces replayed in open loop: parsing (harness process) and prompt building (Locust processes).

Pure (no gevent, no Locust) so the harness, the locustfile and the tests share it.

Formats (column names as published by each trace's owners):
  mooncake  JSONL  {"timestamp": ms, "input_length": n, "output_length": m, "hash_ids": [block ids]}
  azure     CSV    TIMESTAMP (e.g. 2023-11-16 18:15:46.6805900, optional +00:00), ContextTokens, GeneratedTokens
  burstgpt  CSV    Timestamp (s), Request tokens, Response tokens, optional Model (other columns ignored)
  jsonl     JSONL  {"timestamp_ms": t, "input_tokens": n, "output_tokens": m, "model": opt, "prefix_id": opt,
                    "prefix_tokens": opt}

Times become offsets from the trace's first request (rows are sorted by time, stably: a trace out of order is
replayed in time order, and the record says so), minus `start_s`, divided by `speedup`. Rows after the load's
stages end are not sent (counted in the record).

Prefix reuse: a Mooncake hash id names one block of `block_tokens` prompt tokens. Each id maps to one fixed
run of words (seeded by the id), and a prompt is its blocks' words in order, cut to input_length (padded with
fresh words when the blocks are fewer): equal hash-id prefixes give equal prompt prefixes. Generic-JSONL rows
with the same `prefix_id` share their first `prefix_tokens` words the same way. Azure and BurstGPT carry no
prefix information: their prompts are fresh random words from the first word on.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.load.workload import VOCAB, Session

FORMATS = ("mooncake", "azure", "burstgpt", "jsonl")
MAX_PROBLEMS = 10
_COLUMNS = {  # CSV formats: (time, input, output, model or None)
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens", None),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens", "Model"),
}
_FIELDS = {  # JSONL formats: (time, input, output)
    "mooncake": ("timestamp", "input_length", "output_length"),
    "jsonl": ("timestamp_ms", "input_tokens", "output_tokens"),
}
_DT = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$")


def parse_azure_time(text: str) -> float:
    """Epoch seconds of an Azure trace TIMESTAMP: 7 fractional digits (2023 traces) and a UTC offset (2024 traces)
    are both accepted; a time without offset is taken as UTC (only differences matter)."""
    m = _DT.match(text.strip())
    if not m:
        raise ValueError(f"TIMESTAMP {text!r} is not a date-time like 2023-11-16 18:15:46.6805900")
    day, hms, frac, tz = m.groups()
    dt = datetime.strptime(f"{day} {hms}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    t = dt.timestamp() + (float("0." + frac) if frac else 0.0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[-2:])
        t -= sign * timedelta(hours=hh, minutes=mm).total_seconds()
    return t


def _count(v: Any, what: str) -> int:
    bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
    if bad or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"{what} must be a whole number >= 0, got {v!r}")
    return int(v)


def _time(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a number, got {v!r}")
    return float(v)


def _csv_number(s: str | None, what: str) -> float:
    try:
        return float(s)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {s!r}") from None


def _parse_jsonl(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[str]]:
    tk, ik, ok = _FIELDS[fmt]
    rows, problems = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("expected one JSON object per line")
                missing = [k for k in (tk, ik, ok) if k not in obj]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)} (a {fmt} line has {tk}, {ik}, {ok})")
                t = _time(obj[tk], tk) / 1000.0
                row: dict[str, Any] = {"t": t, "in": _count(obj[ik], ik), "out": _count(obj[ok], ok), "line": i}
                if fmt == "mooncake" and obj.get("hash_ids") is not None:
                    h = obj["hash_ids"]
                    if not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in h):
                        raise ValueError("hash_ids must be a list of integers")
                    row["blocks"] = h
                if fmt == "jsonl":
                    if obj.get("model") is not None:
                        if not isinstance(obj["model"], str):
                            raise ValueError(f"model must be a string, got {obj['model']!r}")
                        row["model"] = obj["model"]
                    if obj.get("prefix_id") is not None:
                        if not isinstance(obj["prefix_id"], (str, int)) or isinstance(obj["prefix_id"], bool):
                            raise ValueError(f"prefix_id must be a string or an integer, got {obj['prefix_id']!r}")
                        row["prefix_id"] = obj["prefix_id"]
                        if obj.get("prefix_tokens") is not None:
                            row["prefix_tokens"] = _count(obj["prefix_tokens"], "prefix_tokens")
            except ValueError as e:  # JSONDecodeError is a ValueError
                problems.append(f"{path}:{i}: {e}")
                if len(problems) >= MAX_PROBLEMS:
                    break
                continue
            rows.append(row)
    return rows, problems


def _parse_csv(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[str]]:
    tk, ik, ok, mk = _COLUMNS[fmt]
    rows, problems = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [k for k in (tk, ik, ok) if k not in header]
        if missing:
            raise HarnessError(
                f"{path}: not a {fmt} trace",
                problems=[
                    f"{path}:1: the header lacks {', '.join(missing)} (found: {', '.join(header) or 'no header'})"
                ],
                fix=f"a {fmt} trace is a CSV with the columns {tk}, {ik}, {ok}; or set workload.trace.format to the "
                "file's format (see datasets/README.md)",
            )
        reader.fieldnames = header
        for i, rec in enumerate(reader, 2):
            if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                continue
            try:
                t = parse_azure_time(rec[tk] or "") if fmt == "azure" else _time(_csv_number(rec[tk], tk), tk)
                row: dict[str, Any] = {
                    "t": t,
                    "in": _count(_csv_number(rec[ik], ik), ik),
                    "out": _count(_csv_number(rec[ok], ok), ok),
                    "line": i,
                }
                if mk and (rec.get(mk) or "").strip():
                    row["model"] = rec[mk].strip()
            except ValueError as e:
                problems.append(f"{path}:{i}: {e}")
                if len(problems) >= MAX_PROBLEMS:
                    break
                continue
            rows.append(row)
    return rows, problems


def parse_trace(path: Path, fmt: str) -> list[dict[str, Any]]:
    """Rows {t (s, as in the file), in, out, line, [blocks], [model], [prefix_id, prefix_tokens]} in file order.
    Raises HarnessError naming file:line for every bad row (the first ten)."""
    if fmt not in FORMATS:
        raise HarnessError(
            f"workload.trace.format: {fmt!r} is not a trace format", fix=f"use one of {', '.join(FORMATS)}"
        )
    try:
        rows, problems = _parse_csv(path, fmt) if fmt in _COLUMNS else _parse_jsonl(path, fmt)
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e})", fix=f"give the {fmt} trace as a UTF-8 text file") from None
    except csv.Error as e:
        raise HarnessError(
            f"{path}: not a readable CSV file ({e})", fix=f"check that the file is a {fmt} CSV trace"
        ) from None
    if problems:
        raise HarnessError(
            f"{path}: invalid {fmt} trace",
            problems=problems,
            fix=f"fix those rows (format {fmt}: see datasets/README.md), or set "
            "workload.trace.format to the file's format",
        )
    if not rows:
        raise HarnessError(f"{path}: the {fmt} trace has no requests", fix="give a trace with at least one row")
    return rows


def schedule(
    rows: list[dict[str, Any]],
    *,
    speedup: float,
    start_s: float,
    duration_s: float,
    prefix_tokens: int | None,
    block_tokens: int,
    path: Path | str = "<trace>",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows to send, in time order, with `t` = send offset in seconds from the load's start; and the record's info.

    Rows before `start_s` (trace seconds after its first request) or at/after the end of the stages (after
    scaling) are left out. Zero lengths are sent as 1 (a request needs a prompt and at least one output token)."""
    reordered = any(b["t"] < a["t"] for a, b in pairwise(rows))
    ordered = sorted(rows, key=lambda r: r["t"]) if reordered else list(rows)  # stable: ties keep file order
    t0 = ordered[0]["t"]
    out, before, after, clamped = [], 0, 0, 0
    missing_prefix = []
    for r in ordered:
        rel = r["t"] - t0 - start_s
        if rel < 0:
            before += 1
            continue
        off = rel / speedup
        if off >= duration_s:
            after += 1
            continue
        n_in, n_out = r["in"], r["out"]
        if n_in < 1 or n_out < 1:
            clamped += 1
        row: dict[str, Any] = {"t": off, "in": max(1, n_in), "out": max(1, n_out)}
        if "model" in r:
            row["model"] = r["model"]
        if r.get("blocks"):
            row["blocks"], row["shared"] = r["blocks"], row["in"]
        elif "prefix_id" in r:
            k = r.get("prefix_tokens", prefix_tokens)
            if k is None:
                missing_prefix.append(f"{path}:{r['line']}: prefix_id {r['prefix_id']!r} without prefix_tokens")
                continue
            k = min(k, row["in"])
            row["blocks"] = [f"p:{r['prefix_id']}:{j}" for j in range(math.ceil(k / block_tokens))]
            row["shared"] = k
        out.append(row)
    if missing_prefix:
        raise HarnessError(
            f"{path}: rows with prefix_id need a prefix length",
            problems=missing_prefix[:MAX_PROBLEMS],
            fix="give each such row `prefix_tokens`, or set workload.trace.prefix_tokens",
        )
    if not out:
        span = (ordered[-1]["t"] - t0) / speedup
        raise HarnessError(
            f"{path}: none of the trace's {len(rows)} requests falls inside the load",
            fix=f"the trace spans {span:.3g} s after scaling (speedup {speedup:g}, start_s "
            f"{start_s:g}) and the stages last {duration_s:g} s: lower start_s, raise speedup or "
            "lengthen the stages",
        )
    # the offered rate over the load, for the report's load-shape chart: sends per bin (<= 600 bins)
    bin_s = max(1.0, math.ceil(duration_s / 600.0))
    bins = [0] * max(1, math.ceil(min(duration_s, out[-1]["t"] + bin_s) / bin_s))
    for r in out:
        bins[min(int(r["t"] // bin_s), len(bins) - 1)] += 1
    models = Counter(r["model"] for r in out if "model" in r)
    blocks = {b for r in out for b in r.get("blocks", ())}
    span = out[-1]["t"] - out[0]["t"]
    info: dict[str, Any] = {
        "rows_in_file": len(rows),
        "rows": len(out),
        "rows_before_start": before,
        "rows_after_load": after,
        "reordered": reordered,
        "zero_length_rows_sent_as_1": clamped,
        "first_send_s": round(out[0]["t"], 6),
        "last_send_s": round(out[-1]["t"], 6),
        "mean_rate_rps": round((len(out) - 1) / span, 3) if span > 0 else None,
        "mean_input_tokens": round(sum(r["in"] for r in out) / len(out), 1),
        "mean_output_tokens": round(sum(r["out"] for r in out) / len(out), 1),
        "prefix_blocks": len(blocks),
        "rate_bin_s": bin_s,
        "sends_per_bin": bins,
    }
    if models:
        info["models"] = dict(models.most_common())
        info["models_note"] = (
            "each request goes to its row's model (rows without one: target.model), unless workload.models sets "
            "a weighted mix; per-model results are in the summary's `models`"
        )
    return out, info


def load_trace(
    path: Path,
    fmt: str,
    *,
    speedup: float,
    start_s: float,
    duration_s: float,
    prefix_tokens: int | None,
    block_tokens: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = parse_trace(path, fmt)
    out, info = schedule(
        rows,
        speedup=speedup,
        start_s=start_s,
        duration_s=duration_s,
        prefix_tokens=prefix_tokens,
        block_tokens=block_tokens,
        path=path,
    )
    prefix = (
        f"mooncake hash_ids: one id = one block of {block_tokens} prompt tokens; equal id prefixes give equal "
        "prompt prefixes"
        if fmt == "mooncake"
        else "jsonl prefix_id: rows with one prefix_id share their first prefix_tokens tokens"
        if fmt == "jsonl"
        else "none in this format: every prompt is fresh"
    )
    return out, {"trace": str(path), "format": fmt, "speedup": speedup, "start_s": start_s, **info, "prefix": prefix}


class TraceOffset(float):
    """A send offset (seconds) that also names its trace row; arithmetic on it gives plain floats."""

    row: int

    def __new__(cls, t: float, row: int) -> TraceOffset:
        self = super().__new__(cls, t)
        self.row = row
        return self


class TraceReplay:
    """Locust side: this process's share of the rows (row i goes to process i % n) and each row's request."""

    def __init__(self, rows: list[dict[str, Any]], vocab: Sequence[str] | None, w: dict[str, Any], block_tokens: int):
        self.rows, self.w, self.block_tokens = rows, w, block_tokens
        self.vocab = tuple(vocab) if vocab else VOCAB
        self.seed = int(w.get("seed") or 0)
        self._block = lru_cache(maxsize=4096)(self._make_block)

    def offsets(self, index: int, n_proc: int) -> Iterator[TraceOffset]:
        for i in range(index, len(self.rows), max(1, n_proc)):
            yield TraceOffset(self.rows[i]["t"], i)

    def _make_block(self, key: Any) -> tuple[str, ...]:
        rng = random.Random(f"harness-trace-block:{self.seed}:{key!r}")
        return tuple(rng.choices(self.vocab, k=self.block_tokens))

    def prompt(self, i: int) -> str:
        """Row i's prompt: its blocks' words (the shared part), then fresh words, `in` words in all."""
        r = self.rows[i]
        n = int(r["in"])
        words: list[str] = []
        shared = min(int(r.get("shared") or 0), n)
        for key in r.get("blocks") or ():
            if len(words) >= shared:
                break
            words.extend(self._block(key))
        del words[shared:]
        rng = random.Random(f"harness-trace-row:{self.seed}:{i}")  # same row, same prompt, run after run
        words += rng.choices(self.vocab, k=n - len(words))
        return " ".join(words)

    def session(self, i: int) -> Session:
        r = self.rows[i]
        turn = {"user": self.prompt(i), "prompt_len": int(r["in"]), "max_tokens": int(r["out"]), "assistant": None}
        return Session([turn], random.Random(i), self.vocab, self.w)
