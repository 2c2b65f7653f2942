"""The record's typed schema: strict on write, older layouts upgraded on read, summary.json's JSON unchanged."""

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.record import read_record
from harness.record.schema import ClientStats, DistStats, RunRecord, ServerStat, Summary
from harness.record.store import SCHEMA_VERSION, upgrade

REC = Path(__file__).resolve().parent.parent / "fixtures" / "records"
V1 = REC / "step-autoscale"  # written by schema 1 (extra fields allowed)
V0 = REC / "compare" / "v0-ray-2.58"


def _json(p: Path) -> dict:
    return json.loads(p.read_text())


def test_schema_version_is_2_and_both_old_layouts_load_typed():
    assert SCHEMA_VERSION == 2
    for d in (V0, V1):
        run, summary = read_record(d)
        assert run.schema_version == summary.schema_version == 2
        assert isinstance(summary.client, ClientStats) and summary.client.ttft_ms is not None
    run, summary = read_record(V1)
    assert summary.client.ttft_ms.p95 == _json(V1 / "summary.json")["client"]["ttft_ms"]["p95"]
    assert set(summary.scopes) == set(_json(V1 / "summary.json")["scopes"])
    assert summary.autoscaling == _json(V1 / "summary.json")["autoscaling"]


def test_v1_to_v2_keeps_undeclared_fields_under_unrecognized(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(V1, d)
    s = _json(d / "summary.json")
    s["custom_gate"] = {"ok": True}
    s["client"]["per_tenant"] = {"a": 1}
    s["client"]["ttft_ms"]["p42"] = 7.0
    s["server"]["kv_cache_usage"]["stddev"] = 0.1
    (d / "summary.json").write_text(json.dumps(s))
    r = _json(d / "run.json")
    r["owner"] = {"pid": 1, "host": "h", "user": "u"}
    r["notes"] = "by hand"
    (d / "run.json").write_text(json.dumps(r))
    run, summary = read_record(d)
    assert summary.unrecognized == {
        "custom_gate": {"ok": True},
        "client.per_tenant": {"a": 1},
        "client.ttft_ms.p42": 7.0,
        "server.kv_cache_usage.stddev": 0.1,
    }
    assert run.unrecognized == {"notes": "by hand", "owner.user": "u"} and run.owner.pid == 1
    assert upgrade({"schema_version": 2, "verdict": "pass"}) == {"schema_version": 2, "verdict": "pass"}  # current


def test_write_forbids_undeclared_fields():
    with pytest.raises(ValidationError):
        Summary(run_id="r", scenario="s", status="completed", verdict="pass", bogus=1)
    with pytest.raises(ValidationError):
        ClientStats.model_validate({"ttft_ms": {"p95": 1.0}, "tokens_per_s": 3.0})
    with pytest.raises(ValidationError):
        ServerStat.model_validate({"max": 1.0, "p42": 2.0})
    with pytest.raises(ValidationError):
        RunRecord(run_id="r", scenario={}, autoscaling={})


def test_summary_json_field_names_are_unchanged():
    """The typed client/server blocks write exactly the keys a schema-1 summary.json carried (an interface)."""
    s = _json(V1 / "summary.json")
    typed = Summary.model_validate(upgrade(json.loads(json.dumps(s)))).model_dump(mode="json")
    assert typed["client"] == s["client"] and typed["server"] == s["server"] and typed["scopes"] == s["scopes"]
    assert DistStats.model_validate({"p99.9": 3.0}).model_dump(mode="json") == {"p99.9": 3.0}
    assert "autoscaling" not in Summary(run_id="r", scenario="s", status="completed", verdict="pass").model_dump()
