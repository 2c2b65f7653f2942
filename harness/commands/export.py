"""`harness export RUN_DIR`: a run folder as llm-d's Benchmark Report, and/or logged to MLflow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.export import export_run
from harness.export.mlflow_log import check_uri, log_run_dir, require_mlflow


def check_mlflow_option(uri: str | None) -> None:
    """`--mlflow URI` on any command: a malformed URI or a missing client is exit 2 before anything runs."""
    if uri is not None:
        check_uri(uri)
        require_mlflow()


def export(
    run_dir: Path,
    fmt: str | None,
    out: Path | None,
    mlflow_uri: str | None,
    *,
    experiment: str | None = None,
    say: Callable[[str], None],
    emit: Callable[[str], None],
) -> int:
    check_mlflow_option(mlflow_uri)
    if fmt is not None or mlflow_uri is None:  # a bare `harness export RUN_DIR` prints the report
        text = export_run(run_dir, fmt or "br0.2", out)
        if out is None:
            emit(text)
        else:
            say(f"wrote {out}")
    if mlflow_uri is not None:
        if not (run_dir / "run.json").is_file():
            raise HarnessError(f"{run_dir}: no run.json here", fix="give a folder created by `harness run`")
        res = log_run_dir(run_dir, mlflow_uri, experiment)
        if not res["logged"]:
            raise HarnessError(
                f"MLflow {res['uri']}: run not logged: {res['error']}",
                fix="check that the tracking server is up and reachable, then run this again",
            )
        say(
            f"logged {run_dir.name} to MLflow {res['uri']}: experiment {res['experiment']!r}, "
            f"run {res['mlflow_run_id']}" + (" (updated)" if res["reused"] else "")
        )
    return 0
