"""Selectors the scrape stage sends must parse as PromQL (checked with promtool) and scope to our deployment."""

import shutil
import subprocess

import pytest
import yaml

from harness.metrics.catalog import CATALOG
from harness.metrics.scrape import Scope


def test_selector_scopes_model_app_engine_and_session():
    sc = Scope("tiny", "llm", "session_1", ("LLMServer:tiny-llama",))
    assert sc.selector(CATALOG["kv_cache_usage"], "ray_vllm_kv_cache_usage_perc") == (
        'ray_vllm_kv_cache_usage_perc{model_name="tiny",SessionName="session_1"}'
    )
    sel = sc.selector(CATALOG["replicas"], "ray_serve_deployment_replica_healthy")
    assert 'application="llm"' in sel and r'deployment=~"LLMServer:tiny\\-llama"' in sel
    assert sc.selector(CATALOG["kv_cache_usage"], "vllm:kv_cache_usage_perc") == (
        '{__name__="vllm:kv_cache_usage_perc",model_name="tiny"}'
    )  # plain vLLM: no Ray session label


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (apt-get install -y prometheus)")
def test_selectors_parse_as_promql(tmp_path):
    sc = Scope("m-1", "llm", "s", ("LLMServer:tiny-llama", "a.b+c"))
    exprs = [sc.selector(sig, sig.candidates[0]) for sig in CATALOG.values()]
    rules = {"groups": [{"name": "g", "rules": [{"record": f"r{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    f = tmp_path / "rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
