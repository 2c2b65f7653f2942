"""Issue 26: editors catch mistakes as people type. `harness scenarios schema` prints the JSON Schema generated from
the scenario model (descriptions included); the shipped copy is current and travels in the wheel; every shipped
scenario names it in its first line and validates against it."""

from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.scenario import (
    SCENARIO_DIR,
    SCHEMA_COMMENT,
    SCHEMA_FILE,
    list_scenarios,
    scenario_json_schema,
    scenario_json_schema_text,
)

ROOT = Path(__file__).resolve().parents[2]
# Left as it is for now by the lead's decision (its replica-bound gate is under discussion): no schema comment yet.
UNTOUCHED: set[str] = set()
SHIPPED = [p for p in list_scenarios() if p.name not in UNTOUCHED]


def test_the_shipped_schema_is_current():
    assert SCHEMA_FILE.read_text() == scenario_json_schema_text(), (
        "stale: run `harness scenarios schema --out scenarios/scenario.schema.json`"
    )


def test_the_command_prints_the_schema_with_descriptions(tmp_path):
    res = CliRunner().invoke(app, ["scenarios", "schema"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc == scenario_json_schema()
    assert doc["$schema"].endswith("2020-12/schema") and doc["additionalProperties"] is False
    assert "run ids" in doc["properties"]["name"]["description"]
    assert "7 days" in doc["$defs"]["Stage"]["properties"]["duration_s"]["description"]
    out = tmp_path / "s.json"
    assert CliRunner().invoke(app, ["scenarios", "schema", "--out", str(out)]).exit_code == 0
    assert out.read_text() == scenario_json_schema_text()
    res = CliRunner().invoke(app, ["scenarios", "schema", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(SCENARIO_DIR)))
def test_every_shipped_scenario_names_the_schema_and_validates_against_it(path):
    first = path.read_text().splitlines()[0]
    rel = os.path.relpath(SCHEMA_FILE, path.parent)
    assert first == f"{SCHEMA_COMMENT}{rel}", f"{path}: the first line should be `{SCHEMA_COMMENT}{rel}`"
    assert (path.parent / first[len(SCHEMA_COMMENT) :]).resolve() == SCHEMA_FILE.resolve()
    jsonschema.Draft202012Validator(scenario_json_schema()).validate(yaml.safe_load(path.read_text()))


def test_the_schema_catches_typos_and_wrong_types():
    v = jsonschema.Draft202012Validator(scenario_json_schema())
    base = yaml.safe_load((SCENARIO_DIR / "smoke.yaml").read_text())
    assert not list(v.iter_errors(base))
    typo = {**base, "load": {**base["load"], "stagez": []}}
    assert any("stagez" in e.message for e in v.iter_errors(typo))
    bad = {**base, "load": {**base["load"], "stages": [{"duration_s": "10s", "users": True}]}}
    assert len(list(v.iter_errors(bad))) >= 2


def test_the_wheel_carries_the_schema_next_to_the_scenarios():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["harness._data.scenarios"]
    assert any(fnmatch.fnmatch(SCHEMA_FILE.name, pat) for pat in patterns), patterns
    assert SCHEMA_FILE.parent == SCENARIO_DIR  # the comments' relative paths hold in harness/_data/scenarios too
