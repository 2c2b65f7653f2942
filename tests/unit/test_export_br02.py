"""`harness export --format br0.2`: llm-d's Benchmark Report v0.2 from the stored record fixtures, validated against
the published JSON Schema (vendored: tests/fixtures/llm-d/README.md) plus the unit categories its pydantic models
check (schema_v0_2.py) and the JSON Schema cannot say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.export import render_export
from harness.record import read_record

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMA = json.loads((FIX / "llm-d" / "br_v0_2_json_schema.json").read_text())
RECORDS = [
    FIX / "records" / "step-autoscale",
    FIX / "records" / "autoscale-capped",
    FIX / "records" / "compare" / "ray-2.59a",
    FIX / "records" / "compare" / "v0-ray-2.58",  # schema-0 layout, upgraded on read
]
# schema_v0_2.py's unit checks: TTFT/E2E a time, TPOT/ITL a time per token, token rates tokens/s, requests queries/s
UNITS = {
    "time_to_first_token": {"ms", "s"},
    "request_latency": {"ms", "s"},
    "time_per_output_token": {"ms/token", "s/token"},
    "inter_token_latency": {"ms/token", "s/token"},
    "normalized_time_per_output_token": {"ms/token", "s/token"},
    "output_token_rate": {"tokens/s"},
    "input_token_rate": {"tokens/s"},
    "request_rate": {"queries/s"},
    "kv_cache_usage": {"percent", "fraction"},
    "running_requests": {"count"},
    "waiting_requests": {"count"},
    "output_length": {"count"},
}


def _check_units(doc: dict) -> None:
    agg = doc["results"]["request_performance"]["aggregate"]
    blocks = {**agg.get("latency", {}), **agg.get("throughput", {}), **agg.get("requests", {})}
    for comp in doc["results"].get("observability", {}).get("components", []):
        blocks.update(comp.get("aggregate") or {})
    for name, stats in blocks.items():
        if isinstance(stats, dict):
            assert stats["units"] in UNITS[name], (name, stats["units"])


@pytest.mark.parametrize("run_dir", RECORDS, ids=lambda p: p.name)
def test_every_fixture_exports_a_valid_report(run_dir: Path) -> None:
    doc = render_export(run_dir, "br0.2")
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["version"] == "0.2"
    _check_units(doc)
    labels = {c["metadata"]["label"] for c in doc["scenario"]["stack"]}
    obs = doc["results"].get("observability", {}).get("components", [])
    assert {c["component_label"] for c in obs} <= labels  # observability names a component of the stack


def test_values_are_the_records_own() -> None:
    """Known values of the step-autoscale fixture land in the documented places, in the report's units."""
    d = FIX / "records" / "step-autoscale"
    run, summary = read_record(d)
    assert summary is not None
    doc = render_export(d, "br0.2")
    assert doc["run"]["uid"] == "step-autoscale-20261125T190028Z-4fc6"
    agg = doc["results"]["request_performance"]["aggregate"]
    assert agg["requests"] == {"total": 431, "failures": 0, "output_length": {"units": "count", "mean": 41426 / 431}}
    ttft = agg["latency"]["time_to_first_token"]
    assert (ttft["units"], ttft["p50"], ttft["p99p9"], ttft["mean"]) == (
        "ms",
        137.0755,
        2460.253184000002,
        247.67363712296984,
    )
    assert agg["latency"]["inter_token_latency"]["units"] == "ms/token"
    assert agg["throughput"]["output_token_rate"] == {"units": "tokens/s", "mean": 757.3735721720042}
    assert agg["throughput"]["input_token_rate"]["mean"] == summary.server["prompt_tokens"].rate
    eng = doc["scenario"]["stack"][0]["standardized"]
    assert (eng["kind"], eng["replicas"], eng["model"]["name"]) == ("inference_engine", 3, "sim-scale")
    assert eng["accelerator"] == {"model": "cpu", "count": 0, "parallelism": {"tp": 1, "pp": 1}}
    load = doc["scenario"]["load"]["standardized"]
    assert load["input_seq_len"] == {"distribution": "gaussian", "value": 256.0, "std_dev": 64.0, "min": 1}
    assert load["concurrency"] == 16 and "rate_qps" not in load
    kv = doc["results"]["observability"]["components"][0]["aggregate"]["kv_cache_usage"]
    assert (kv["units"], kv["max"]) == ("fraction", 0.98828125)
    assert doc["run"]["time"]["duration"] == f"PT{run.timeline.load_ended_at - run.timeline.load_started_at:.3f}S"


def test_cfg_id_is_stable_and_tells_settings_apart(tmp_path: Path) -> None:
    a = render_export(FIX / "records" / "compare" / "ray-2.59a", "br0.2")
    b = render_export(FIX / "records" / "compare" / "ray-2.59b", "br0.2")
    slow = render_export(FIX / "records" / "compare" / "ray-2.60-slow", "br0.2")
    assert a["scenario"]["stack"][0]["metadata"]["cfg_id"] == b["scenario"]["stack"][0]["metadata"]["cfg_id"]
    assert a["scenario"]["stack"][0]["metadata"]["cfg_id"] != slow["scenario"]["stack"][0]["metadata"]["cfg_id"]


def test_cli_writes_json_or_yaml_and_rejects_unknown_formats(tmp_path: Path) -> None:
    src = FIX / "records" / "step-autoscale"
    r = CliRunner().invoke(app, ["export", str(src), "--format", "br0.2", "-o", str(tmp_path / "br.yaml")])
    assert r.exit_code == 0, r.output
    jsonschema.validate(yaml.safe_load((tmp_path / "br.yaml").read_text()), SCHEMA)
    r = CliRunner().invoke(app, ["export", str(src)])  # default: br0.2 as JSON on stdout
    assert r.exit_code == 0 and json.loads(r.stdout)["version"] == "0.2"
    r = CliRunner().invoke(app, ["export", str(src), "--format", "br9"])
    assert r.exit_code == 2 and "unknown export format" in r.output and "br0.2" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path)])
    assert r.exit_code == 2 and "no run.json" in r.output
    bad = shutil.copytree(src, tmp_path / "bad")
    (bad / "run.json").write_text("{not json")
    r = CliRunner().invoke(app, ["export", str(bad)])
    assert r.exit_code == 2 and "run.json: not valid JSON" in r.output and "fix:" in r.output  # the one reader


def test_a_run_without_summary_still_exports(tmp_path: Path) -> None:
    """A crashed run (no summary.json) exports its scenario and an empty results block."""
    d = shutil.copytree(FIX / "records" / "step-autoscale", tmp_path / "crashed")
    (d / "summary.json").unlink()
    doc = render_export(d, "br0.2")
    jsonschema.validate(doc, SCHEMA)
    assert doc["results"] == {}
