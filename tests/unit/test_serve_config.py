"""Scenario → Serve config (pure), and the declarative merge that leaves other people's apps as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.deploy import rest
from harness.deploy.package import package_uri, serve_apps_zip
from harness.deploy.serve_config import OWNER_ENV, SIM_IMPORT_PATH, VLLM_IMPORT_PATH, owner_of, serve_config
from harness.errors import DeployError
from harness.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_sim_config_is_what_serve_validates_and_builds(tmp_path):
    from ray.serve.schema import ServeDeploySchema

    sc = load_scenario(ROOT / "scenarios" / "smoke.yaml")
    doc = serve_config(sc, runtime_env={"working_dir": "gcs://_ray_pkg_abc.zip"}, owner="harness@x:1")
    parsed = ServeDeploySchema.model_validate(doc)
    (app,) = parsed.applications
    assert app.import_path == SIM_IMPORT_PATH and app.name == sc.target.app_name
    assert app.runtime_env["env_vars"][OWNER_ENV] == "harness@x:1"
    # the builder Serve would call accepts the args as they travel (JSON): same app as the Ray Client path builds
    from serve_apps.sim.app import build_app

    assert build_app(doc["applications"][0]["args"]) is not None


def test_vllm_config_uses_ray_serve_llms_documented_builder(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "model"))
    sc = load_scenario(ROOT / "scenarios" / "vllm-cpu-smoke.yaml")
    (app,) = serve_config(sc)["applications"]
    assert app["import_path"] == VLLM_IMPORT_PATH == "ray.serve.llm:build_openai_app"
    (llm,) = app["args"]["llm_configs"]
    assert llm["model_loading_config"]["model_id"] == sc.target.model
    assert llm["experimental_configs"]["stream_batching_interval_ms"] == 0


def test_serve_config_cli_prints_yaml_serve_deploy_accepts():
    from ray.serve.schema import ServeDeploySchema

    r = subprocess.run([sys.executable, "-m", "harness.cli", "serve-config", "smoke"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ServeDeploySchema.model_validate(yaml.safe_load(r.stdout))
    bad = subprocess.run(
        [sys.executable, "-m", "harness.cli", "serve-config", "external-endpoint"], capture_output=True, text=True
    )
    assert bad.returncode in (2,) and "Traceback" not in bad.stderr, bad.stderr


def _details(**apps) -> dict:
    return {
        "controller_info": {"actor_id": "x"},
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000, "ssl_keyfile": None, "keep_alive_timeout_s": 90},
        "applications": apps,
    }


def _app(name: str, owner: str | None = None, source: str = "declarative") -> dict:
    cfg = {"name": name, "route_prefix": f"/{name}", "import_path": "theirs:app", "args": {"k": 1}}
    if owner:
        cfg["runtime_env"] = {"env_vars": {OWNER_ENV: owner}}
    return {"status": "RUNNING", "source": source, "deployed_app_config": cfg if source == "declarative" else None}


def test_merge_keeps_every_other_app_verbatim_and_replaces_only_ours():
    ours = {"name": "llm", "route_prefix": "/", "import_path": SIM_IMPORT_PATH, "args": {}}
    d = _details(a=_app("a"), llm=_app("llm", owner="harness@old:9"), b=_app("b"))
    merged = rest.merged_config(d, ours)
    assert merged["applications"] == [
        d["applications"]["a"]["deployed_app_config"],
        d["applications"]["b"]["deployed_app_config"],
        ours,
    ]
    assert merged["http_options"] == {"host": "0.0.0.0", "port": 8000, "keep_alive_timeout_s": 90}
    assert rest.without_app(d, "a")["applications"] == [
        d["applications"][n]["deployed_app_config"] for n in ("b", "llm")
    ]


def test_foreign_same_name_and_imperative_apps_are_refused():
    with pytest.raises(DeployError, match="did not deploy"):
        rest.refuse_foreign(_details(llm=_app("llm")), "llm", replace_app=False)
    rest.refuse_foreign(_details(llm=_app("llm")), "llm", replace_app=True)
    rest.refuse_foreign(_details(llm=_app("llm", owner="harness@h:1")), "llm", replace_app=False)  # a leftover of ours
    with pytest.raises(DeployError, match="from Python"):
        rest.refuse_foreign(_details(x=_app("x", source="imperative")), "llm", replace_app=False)
    deleting = {"status": "DELETING", "source": "declarative", "deployed_app_config": None}
    rest.refuse_foreign(_details(old=deleting), "llm", replace_app=False)  # going away: nothing to put back


def test_undeploy_removes_only_an_app_with_our_mark():
    class FakeDash:
        def __init__(self, details):
            self.details, self.put = details, None

        def serve_details(self):
            return self.details if self.put is None else {"applications": {}}

        def put_serve_config(self, cfg):
            self.put = cfg

    theirs = FakeDash(_details(llm=_app("llm")))
    assert not rest.undeploy_rest(theirs, "llm", owner="harness@me:1") and theirs.put is None  # type: ignore[arg-type]
    other_harness = FakeDash(_details(llm=_app("llm", owner="harness@other:2")))
    assert not rest.undeploy_rest(other_harness, "llm", owner="harness@me:1")  # type: ignore[arg-type]
    mine = FakeDash(_details(llm=_app("llm", owner="harness@me:1"), b=_app("b")))
    assert rest.undeploy_rest(mine, "llm", owner="harness@me:1")  # type: ignore[arg-type]
    assert [a["name"] for a in mine.put["applications"]] == ["b"]
    assert owner_of(_app("llm", owner="harness@me:1")["deployed_app_config"]) == "harness@me:1"


def test_serve_apps_package_is_deterministic_and_named_by_content(tmp_path):
    a, b = serve_apps_zip(), serve_apps_zip()
    assert a == b and package_uri(a) == package_uri(b)
    assert package_uri(a).startswith("gcs://_ray_pkg_") and package_uri(a).endswith(".zip")
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(a)).namelist()
    assert "serve_apps/sim/app.py" in names and not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    src = tmp_path / "serve_apps"
    src.mkdir()
    (src / "m.py").write_text("x = 1\n")
    one = serve_apps_zip(src)
    (src / "m.py").write_text("x = 2\n")
    assert package_uri(serve_apps_zip(src)) != package_uri(one)  # a changed app is a new package
