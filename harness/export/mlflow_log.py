"""Log a finished run folder to MLflow with MLflow's own client (`pip install "harness[mlflow]"`).

One MLflow run per harness run, in the experiment named by $MLFLOW_EXPERIMENT_NAME or else the scenario's name:
params (resolved scenario target/workload/load settings, versions, labels), metrics (SLO observed values, client
and server statistics), tags (verdict, status, run id, labels) and the artifacts report.html, summary.json and
junit.xml. Logging the same harness run again reuses its MLflow run (found by the tag `harness.run_id`).
`log_run_dir` never raises: an unreachable server is a result (`logged: false`), written to `mlflow.json` in the
run folder, so the run stays exportable later with `harness export --mlflow URI RUN_DIR`.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import HarnessError
from harness.record import read_record
from harness.record.schema import DistStats, RunRecord, Summary
from harness.record.store import write_json
from harness.urls import check_url

MARKER = "mlflow.json"
ARTIFACTS = ("report.html", "summary.json", "junit.xml")
INSTALL = 'pip install "harness[mlflow]"   (MLflow\'s light client: pip install mlflow-skinny)'
SCHEMES = ("http", "https", "file", "sqlite", "databricks")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_PARAM = 6000  # MLflow's limit on a param value
_MAX_KEY = 250
_BATCH = 100  # params/tags per log_batch call (MLflow's limit)
# Fail fast on an unreachable server (MLflow's default: 7 retries with growing backoff, ~2 min); a user's own
# setting of these variables wins.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # stdout is `harness run --json`'s
}


def check_uri(uri: str) -> None:
    """A malformed tracking URI is bad input (exit 2) before anything runs."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise HarnessError(
            f"--mlflow {uri!r}: not an MLflow tracking URI (scheme {parts.scheme or 'missing'!r})",
            fix="e.g. --mlflow http://mlflow.example:5000, file:///path/mlruns, sqlite:///path/mlflow.db or databricks",
        )
    if parts.scheme in ("http", "https"):
        check_url(uri, "--mlflow")
    elif parts.scheme in ("file", "sqlite") and not parts.path.strip("/"):
        raise HarnessError(f"--mlflow {uri!r}: no path", fix=f"e.g. {parts.scheme}:///abs/path")


def require_mlflow() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise HarnessError("--mlflow needs MLflow's client, which is not installed", fix=INSTALL) from None


def shown_uri(uri: str) -> str:
    """The URI as printed and recorded: any password masked."""
    p = urlsplit(uri)
    if p.password is None:
        return uri
    host = p.hostname or ""
    netloc = f"{p.username}:***@{host}" + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))


def _key(k: str) -> str:
    return _KEY_BAD.sub("_", k)[:_MAX_KEY]


def _flatten(prefix: str, o: Any, out: dict[str, str]) -> None:
    if isinstance(o, dict):
        for k, v in o.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(o, list) and o and all(isinstance(v, dict) for v in o):
        for i, v in enumerate(o):
            _flatten(f"{prefix}.{i}", v, out)
    elif o is not None:
        out[_key(prefix)] = str(o)[:_MAX_PARAM]


def params_of(run: RunRecord) -> dict[str, str]:
    """Scenario and target settings, versions, labels: flat `a.b.c` keys, MLflow's character set."""
    out: dict[str, str] = {}
    sc = run.scenario
    for section in ("target", "workload", "load", "goodput"):
        _flatten(section, sc.get(section), out)
    out["scenario.name"] = str(sc.get("name"))
    for i, slo in enumerate(sc.get("slos") or []):
        out[f"scenario.slos.{i}"] = str(slo)[:_MAX_PARAM]
    env = run.environment
    for k in ("python", "harness", "ray", "vllm", "torch", "locust", "platform"):
        if env.get(k):
            out[f"version.{k}"] = str(env[k])
    if run.git_commit:
        out["version.git_commit"] = run.git_commit
    for k, v in run.labels.items():
        out[_key(f"label.{k}")] = str(v)[:_MAX_PARAM]
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metrics_of(summary: Summary) -> dict[str, float]:
    """SLO observed values (`slo.<signal>.<stat>[.<scope>]`), client (`client.<metric>.<stat>`) and server
    (`server.<signal>.<stat>`) statistics, in the record's canonical units."""
    out: dict[str, float] = {}
    for r in summary.slos:
        name = f"slo.{r.signal}.{r.stat}" + (f".{r.scope.lstrip('@')}" if r.scope else "")
        if _finite(r.observed):
            out[_key(name)] = float(r.observed)  # type: ignore[arg-type]
    out["slo.passed"] = float(sum(r.passed for r in summary.slos))
    out["slo.failed"] = float(sum(not r.passed for r in summary.slos))
    for field, value in summary.client:
        if isinstance(value, DistStats):
            for stat, v in value.model_dump(by_alias=True).items():
                if _finite(v):
                    out[_key(f"client.{field}.{stat}")] = float(v)
        elif _finite(value):
            out[_key(f"client.{field}")] = float(value)
    for signal, block in summary.server.items():
        for stat, v in block.model_dump(by_alias=True).items():
            if _finite(v):
                out[_key(f"server.{signal}.{stat}")] = float(v)
    return out


def tags_of(run: RunRecord, summary: Summary | None) -> dict[str, str]:
    tags = {
        "harness.run_id": run.run_id,
        "scenario": str(run.scenario.get("name")),
        "status": run.status,
        "verdict": summary.verdict if summary is not None else "none",
        "mlflow.source.name": "harness",
    }
    if run.git_commit:
        tags["mlflow.source.git.commit"] = run.git_commit.removesuffix("-dirty")
    for k, v in run.labels.items():
        tags[_key(f"label.{k}")] = str(v)
    return tags


_STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED", "running": "FAILED"}


def log_run(run_dir: Path, uri: str, experiment: str | None = None) -> dict[str, Any]:
    """Log one run folder; raises on any failure (log_run_dir is the never-raising wrapper)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    run, summary = read_record(run_dir)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or str(run.scenario.get("name") or "harness")
    for k, v in _HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    found = client.search_runs([exp_id], filter_string=f"tags.`harness.run_id` = '{run.run_id}'", max_results=1)
    tl = run.timeline
    start_ms = int((tl.created_at or time.time()) * 1000)
    if found:
        mrun = found[0]
        mlflow_id, have = mrun.info.run_id, mrun.data.params
    else:
        mlflow_id = client.create_run(exp_id, start_time=start_ms, run_name=run.run_id).info.run_id
        have = {}
    params = [Param(k, v) for k, v in params_of(run).items() if k not in have]
    tags = [RunTag(k, v) for k, v in tags_of(run, summary).items()]
    at_ms = int((tl.load_ended_at or tl.finished_at or time.time()) * 1000)
    metrics = [Metric(k, v, at_ms, 0) for k, v in (metrics_of(summary) if summary is not None else {}).items()]
    for i in range(0, max(len(params), len(tags)), _BATCH):
        client.log_batch(mlflow_id, params=params[i : i + _BATCH], tags=tags[i : i + _BATCH])
    for i in range(0, len(metrics), 1000):
        client.log_batch(mlflow_id, metrics=metrics[i : i + 1000])
    artifacts = [a for a in ARTIFACTS if (run_dir / a).is_file()]
    for a in artifacts:
        client.log_artifact(mlflow_id, str(run_dir / a))
    end_ms = int((tl.finished_at or time.time()) * 1000)
    client.set_terminated(mlflow_id, status=_STATUS.get(run.status, "FAILED"), end_time=end_ms)
    return {
        "experiment": name,
        "experiment_id": exp_id,
        "mlflow_run_id": mlflow_id,
        "reused": bool(found),
        "params": len(params),
        "metrics": len(metrics),
        "artifacts": artifacts,
    }


def log_run_dir(run_dir: Path, uri: str, experiment: str | None = None) -> dict[str, Any]:
    """Log a run folder to MLflow; never raises. The result is also written to <run>/mlflow.json."""
    res: dict[str, Any] = {"uri": shown_uri(uri), "logged": False, "at": time.time(), "error": None}
    try:
        res.update(log_run(run_dir, uri, experiment), logged=True)
    except Exception as e:  # noqa: BLE001 — unreachable, refused, auth: the run itself is complete and stays so
        msg = str(e).replace(uri, res["uri"]).strip().splitlines()
        res["error"] = f"{e.__class__.__name__}: {msg[0] if msg else ''}"[:500]
    try:
        write_json(run_dir / MARKER, res)
    except OSError:
        pass
    return res
