"""Prometheus config and alert rules under docker/prometheus/: promtool checks, rule unit tests, and conventions.

promtool comes with Debian's `prometheus` package (`apt-get install -y prometheus`); CI installs it.
The metric-name checks read the real /metrics captures in ../shared/reference/ (or $HARNESS_REFERENCE_DIR).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "docker" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "rules" / "alerts.yml"
RULE_TESTS = PROM_DIR / "rules" / "alerts_test.yml"
README = REPO / "docker" / "README.md"

EXPECTED_ALERTS = {"KVCacheHigh", "RayNodeDown", "HighLatency", "AutoscalerChurn", "ServeErrorRate"}

# Names the rules may use although the Ray 2.60 captures do not show them, and why.
NOT_IN_CAPTURES = {
    "up": "synthetic series written by Prometheus for every target",
    "ray_serve_num_http_error_requests_total": "exists in Ray 2.60 but appears only after the first error",
}
# Older vLLM-through-Ray names -> the name Ray 2.60 + vLLM 0.32 export instead.
LEGACY = {
    "ray_vllm:kv_cache_usage_perc": "ray_vllm_kv_cache_usage_perc",
    "ray_vllm:gpu_cache_usage_perc": "ray_vllm_kv_cache_usage_perc",
    "ray_vllm:time_to_first_token_seconds_bucket": "ray_vllm_time_to_first_token_seconds_bucket",
}

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus); CI installs it")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120)


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _alerts() -> dict[str, dict]:
    return {r["alert"]: r for r in _rules() if "alert" in r}


# ------------------------------------------------------------------ promtool


def test_promtool_check_config():
    res = _run("check", "config", str(CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout + res.stderr  # the config really loads alerts.yml


def test_promtool_check_rules():
    res = _run("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(_rules())} rules found" in res.stdout + res.stderr


def test_promtool_test_rules():
    res = _run("test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules_fails_when_a_threshold_moves(tmp_path):
    """The rule tests have teeth: raising the KV-cache threshold breaks the firing case."""
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace(") > 0.9\n", ") > 0.99\n"))
    (tmp_path / "alerts_test.yml").write_text(RULE_TESTS.read_text())
    res = _run("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert res.returncode != 0


# ------------------------------------------------------------------ conventions


def test_the_five_alerts_exist():
    assert set(_alerts()) == EXPECTED_ALERTS


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_has_for_severity_and_annotations(name):
    rule = _alerts()[name]
    assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: needs a `for:`"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    for key in ("summary", "description", "runbook"):
        assert rule["annotations"].get(key, "").strip(), f"{name}: missing {key} annotation"
    assert "\n" not in rule["annotations"]["runbook"].strip(), "runbook is one line"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_runbook_points_at_a_readme_section(name):
    anchor = re.search(r"docker/README\.md#([a-z0-9-]+)", _alerts()[name]["annotations"]["runbook"]).group(1)
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+\s+(.*)$", README.read_text(), re.M)
    }
    assert anchor in headings, f"docker/README.md has no section #{anchor}"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_reads_only_the_ray_job(name):
    """The ray-head-static job scrapes the same series again: every selector filters on job="ray"."""
    expr = _alerts()[name]["expr"]
    for m in _SELECTOR.finditer(expr):
        body = expr[m.end() : expr.index("}", m.end())]
        assert 'job="ray"' in body, f'{name}: {m.group(1)} without job="ray"'


def test_each_alert_has_firing_and_quiet_cases():
    cases = [t for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert firing == EXPECTED_ALERTS, f"no firing case for {EXPECTED_ALERTS - firing}"
    assert quiet == EXPECTED_ALERTS, f"no non-firing case for {EXPECTED_ALERTS - quiet}"


# ------------------------------------------------------------------ names that exist


def _reference_dir() -> Path:
    # tests/fixtures holds a copy of ../shared/reference, so the check runs in any checkout
    for cand in (
        os.environ.get("HARNESS_REFERENCE_DIR"),
        REPO / "tests" / "fixtures",
        REPO.parent / "shared" / "reference",
    ):
        if cand and Path(cand).is_dir() and list(Path(cand).glob("*.prom")):
            return Path(cand)
    pytest.skip("no reference /metrics captures (../shared/reference/*.prom)")


def _reference_labels() -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for f in _reference_dir().glob("*.prom"):
        for line in f.read_text().splitlines():
            m = _SAMPLE.match(line)
            if m:
                keys = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or ""))
                labels.setdefault(m.group(1), set()).update(keys)
    return labels


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_uses_metric_and_label_names_that_exist(name):
    ref = _reference_labels()
    expr = _alerts()[name]["expr"]
    metrics = {m.group(1) for m in _SELECTOR.finditer(expr)}
    available: set[str] = set()
    for metric in metrics:
        current = LEGACY.get(metric, metric)
        if metric in NOT_IN_CAPTURES:
            continue
        assert current in ref, f"{name}: {metric} is not exported by Ray 2.60 / vLLM 0.32"
        available |= ref[current]
    by_labels = {lbl.strip() for grp in _BY.findall(expr) for lbl in grp.split(",") if lbl.strip()}
    if available:
        assert by_labels <= available, f"{name}: grouping labels {by_labels - available} not on {metrics}"
