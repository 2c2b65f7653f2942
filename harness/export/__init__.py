"""Exports: a run's record in formats other tools read (llm-d's Benchmark Report) and MLflow logging.

Each format is a pure function of the typed record (run.json + summary.json, read through `read_record`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.export.br02 import to_br02
from harness.record import read_record
from harness.record.schema import RunRecord, Summary
from harness.record.store import write_text

FORMATS: dict[str, Callable[[RunRecord, Summary | None], dict[str, Any]]] = {"br0.2": to_br02}


def render_export(run_dir: Path, fmt: str) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise HarnessError(
            f"--format {fmt!r}: unknown export format",
            fix=f"one of: {', '.join(FORMATS)} (llm-d Benchmark Report v0.2)",
        )
    if not (run_dir / "run.json").is_file():
        raise HarnessError(f"{run_dir}: no run.json here", fix="give a folder created by `harness run`")
    try:
        run, summary = read_record(run_dir)
    except (ValueError, OSError) as e:
        raise HarnessError(
            f"{run_dir}: cannot read the record: {e}", fix="run.json/summary.json must be the files `harness run` wrote"
        ) from None
    return FORMATS[fmt](run, summary)


def dump(doc: dict[str, Any], out: Path | None) -> str:
    """JSON, or YAML when the output file ends in .yaml/.yml (llm-d writes its reports as YAML)."""
    if out is not None and out.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_dump(doc, sort_keys=False)
    return json.dumps(doc, indent=2) + "\n"


def export_run(run_dir: Path, fmt: str, out: Path | None) -> str:
    """The export's text; written to `out` when given (atomically)."""
    text = dump(render_export(run_dir, fmt), out)
    if out is not None:
        try:
            write_text(out, text)
        except OSError as e:
            raise HarnessError(f"cannot write {out}: {e.strerror}", fix="give -o a writable path") from None
    return text
