"""Older record layouts → the current one. Called by `store.upgrade()`; each step is one version forward.

schema_version 0 (no `schema_version` key; the first prototype's layout):
  run.json      `env` {python_version, ray_version, vllm_version, cpu_count, gpu_count, nodes},
                `started_at` / `finished_at`, no `labels`
  summary.json  `passed` (bool) instead of `verdict`; `slos` as [{slo, value, ok}];
                client latencies under `latency_ms` {ttft, itl, e2e} (no tpot); top-level `requests`, `errors`,
                `tokens_per_s`, `duration_s`; `server` keyed by the Prometheus series that answered
                (e.g. `ray_vllm:kv_cache_usage_perc`), no `server_series`
  samples       `latency_ms` instead of `e2e_ms`; no `ok`, `tpot_ms`

schema_version 1 (models with `extra="allow"`): the same fields as 2, but a file may carry fields no model
declared (set onto the record by code of that time). Version 2 declares every field and forbids others:
`upgrade_v1` moves what 2 does not declare (top level, and inside `client`, `server` blocks, `owner`, `timeline`)
into `unrecognized` {dotted path: value}, so nothing is lost and the strict models accept the file.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel

_UNITS = {"time": "ms", "ratio": "fraction", "count": "", "rate": "per_s"}


def _logical(series: str) -> str | None:
    """The catalog signal a series name belongs to (any naming era)."""
    from harness.metrics.catalog import CATALOG

    name = series.removesuffix("_bucket")
    for sig in CATALOG.values():
        if name in sig.candidates:
            return sig.name
    return None


def _slo_v0(s: dict) -> dict:
    from harness.slo.parse import parse_slo

    text = s.get("slo", "")
    try:
        p = parse_slo(text)
        signal, stat, op, threshold, source = p.signal, p.stat, p.op, p.threshold, p.source
        unit = _UNITS.get(getattr(p, "kind", ""), "")
    except (ValueError, KeyError, AttributeError):
        parts = text.split()
        signal, _, stat = (parts[0] if parts else "?").partition(".")
        op, threshold, source, unit = (parts[1] if len(parts) > 1 else "?"), float("nan"), "client", ""
    return {
        "slo": text,
        "signal": signal,
        "stat": stat or "value",
        "op": op,
        "threshold": threshold,
        "observed": s.get("value"),
        "passed": bool(s.get("ok")),
        "source": "client samples" if source == "client" else "prometheus",
        "unit": unit,
        "reason": "" if s.get("ok") else "failed (schema 0 record)",
    }


def summary_v0_to_v1(s: dict) -> dict:
    lat = s.get("latency_ms") or {}
    n, errs, dur = s.get("requests") or 0, s.get("errors") or 0, s.get("duration_s") or 0.0
    client = {f"{k}_ms": lat.get(k) for k in ("ttft", "itl", "tpot", "e2e")}
    client.update(
        requests=n,
        errors=errs,
        errors_by_class={},
        error_rate=errs / n if n else None,
        output_tokens_per_s=s.get("tokens_per_s"),
        requests_per_s=(n - errs) / dur if dur else None,
        duration_s=dur,
    )
    server, series = {}, {}
    for name, st in (s.get("server") or {}).items():
        sig = _logical(name)
        if sig:
            server[sig], series[sig] = st, name.removesuffix("_bucket")
    passed = bool(s.get("passed"))
    return {
        "schema_version": 1,
        "run_id": s.get("run_id"),
        "scenario": s.get("scenario"),
        "status": s.get("status", "completed"),
        "verdict": "pass" if passed else "fail",
        "slos": [_slo_v0(x) for x in s.get("slos", [])],
        "client": client,
        "server": server,
        "server_series": series,
        "reconciliation": {},
        "warnings": list(s.get("warnings", [])),
    }


def run_v0_to_v1(r: dict) -> dict:
    env = r.get("env") or {}
    out = {k: v for k, v in r.items() if k not in ("env", "started_at", "finished_at")}
    out.update(
        schema_version=1,
        environment={
            "python": env.get("python_version"),
            "ray": env.get("ray_version"),
            "vllm": env.get("vllm_version"),
            "cpu_count": env.get("cpu_count"),
            "machine": env.get("machine"),
            "cluster": {"nodes": env.get("nodes"), "gpus": float(env.get("gpu_count") or 0)},
        },
        timeline={"created_at": r.get("started_at"), "finished_at": r.get("finished_at"), **(r.get("timeline") or {})},
        labels=r.get("labels") or {},
    )
    return out


def upgrade_v0(record: dict) -> dict:
    return summary_v0_to_v1(record) if "passed" in record or "latency_ms" in record else run_v0_to_v1(record)


def _names(model: type[BaseModel]) -> set[str]:
    return {f.alias or n for n, f in model.model_fields.items()}


def _split(d: dict, model: type[BaseModel], path: str, out: dict[str, Any]) -> dict:
    """`d` without the keys `model` does not declare; those go to `out` under their dotted path."""
    known = _names(model)
    for k in [k for k in d if k not in known]:
        out[f"{path}{k}"] = d[k]
    return {k: v for k, v in d.items() if k in known}


def upgrade_v1(record: dict) -> dict:
    """schema 1 → 2: undeclared fields move to `unrecognized` (see the module docstring)."""
    from harness.record.schema import ClientStats, DistStats, Owner, RunRecord, ServerStat, Summary, Timeline

    is_summary = "verdict" in record
    extra: dict[str, Any] = dict(record.get("unrecognized") or {})
    out = _split(record, Summary if is_summary else RunRecord, "", extra)
    if is_summary:
        client = out.get("client")
        if isinstance(client, dict):
            client = _split(client, ClientStats, "client.", extra)
            for k, v in client.items():
                if k.endswith("_ms") and isinstance(v, dict):
                    client[k] = _split(v, DistStats, f"client.{k}.", extra)
            out["client"] = client
        if isinstance(out.get("server"), dict):
            out["server"] = {
                sig: _split(st, ServerStat, f"server.{sig}.", extra) if isinstance(st, dict) else st
                for sig, st in out["server"].items()
            }
    else:
        for key, model in (("owner", Owner), ("timeline", Timeline)):
            if isinstance(out.get(key), dict):
                out[key] = _split(out[key], model, f"{key}.", extra)
    out["schema_version"] = 2
    if extra:
        out["unrecognized"] = extra
    return out


def upgrade_samples(df: pd.DataFrame) -> pd.DataFrame:
    """samples.parquet of any layout → current columns (the file has no version: detect by columns)."""
    if "e2e_ms" not in df and "latency_ms" in df:
        df = df.rename(columns={"latency_ms": "e2e_ms"})
    if "ok" not in df:
        df = df.assign(ok=df["error"].isna() if "error" in df else True)
    if "tpot_ms" not in df and {"ttft_ms", "e2e_ms", "output_tokens"} <= set(df.columns):
        n = df["output_tokens"].astype(float)
        df = df.assign(tpot_ms=((df["e2e_ms"] - df["ttft_ms"]) / (n - 1)).where(n >= 2))
    if "itl_mean_ms" not in df and "itl_ms" in df:
        df = df.assign(itl_mean_ms=[float(sum(x) / len(x)) if x is not None and len(x) else None for x in df["itl_ms"]])
    if "warmup" not in df:
        df = df.assign(warmup=False)
    return df
