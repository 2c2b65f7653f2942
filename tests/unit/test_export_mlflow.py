"""`--mlflow URI` bad input (exit 2 before anything runs), the missing client, what is logged (params, metrics,
tags from a record fixture), and the run's never-fail path. The real server: tests/integration/test_mlflow_export.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.export.mlflow_log import metrics_of, params_of, shown_uri, tags_of
from harness.record import read_record
from harness.run import pipeline

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records"


@pytest.mark.parametrize(
    "uri, says",
    [
        ("ftp://host/x", "not an MLflow tracking URI"),
        ("mlflow.example:5000", "not an MLflow tracking URI"),
        ("http://", "no host"),
        ("http://bad host:5000", "host"),
        ("http://127.0.0.1:99999", "port"),
        ("file://", "no path"),
    ],
)
def test_malformed_uri_is_exit_2_on_run_and_export(uri: str, says: str, tmp_path: Path) -> None:
    for args in (["run", "smoke", "-o", str(tmp_path), "--mlflow", uri], ["export", str(FIX / "step-autoscale")]):
        if args[0] == "export":
            args += ["--mlflow", uri]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert says in r.output, r.output
    assert not list(tmp_path.iterdir())  # the run never started


def test_without_mlflow_installed_exit_2_gives_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    for args in (["export", str(FIX / "step-autoscale"), "--mlflow", "http://127.0.0.1:5000"],):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and 'pip install "harness[mlflow]"' in r.output, r.output
    r = CliRunner().invoke(app, ["run", "smoke", "--mlflow", "http://127.0.0.1:5000"])
    assert r.exit_code == 2 and "mlflow-skinny" in r.output


def test_what_is_logged_from_a_record() -> None:
    run, summary = read_record(FIX / "step-autoscale")
    assert summary is not None
    p = params_of(run)
    assert p["target.sim.itl_ms"] == "10.0" and p["load.stages.0.name"] == "low" and p["version.torch"] == "2.13.0+cpu"
    assert all(len(k) <= 250 and len(v) <= 6000 for k, v in p.items())
    m = metrics_of(summary)
    assert m["slo.goodput.attainment"] == 1.0 and m["client.e2e_ms.p50"] == 1440.1005
    assert m["server.generation_tokens.total"] == 41840.0 and m["slo.passed"] == len(summary.slos)
    t = tags_of(run, summary)
    assert t["verdict"] == "pass" and t["status"] == "completed" and t["scenario"] == "step-autoscale"


def test_password_never_shown() -> None:
    assert shown_uri("https://bob:s3cret@mlflow.example:5000/x") == "https://bob:***@mlflow.example:5000/x"
    assert shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


class _UI:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


def test_unreachable_mlflow_warns_and_the_folder_stays_exportable(tmp_path: Path) -> None:
    """The pipeline's step after a run: a refused connection is a warning naming the later command, never a raise."""
    d = shutil.copytree(FIX / "step-autoscale", tmp_path / "run")
    ui = _UI()
    pipeline._log_mlflow(d, "http://127.0.0.1:9", ui)  # type: ignore[arg-type]  # port 9: nothing listens
    assert len(ui.warnings) == 1 and "harness export --mlflow URI" in ui.warnings[0]
    marker = json.loads((d / "mlflow.json").read_text())
    assert marker["logged"] is False and "Connection refused" in marker["error"]
    assert (d / "run.json").is_file() and (d / "summary.json").is_file()
