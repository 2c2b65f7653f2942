import json

from harness.commands.dashboards import DASHBOARD_DIR, build_dashboards, fix_ray_dashboard, panel_queries


def test_committed_dashboards_are_generated_from_the_catalog():
    for name, dash in build_dashboards().items():
        committed = json.loads((DASHBOARD_DIR / "harness" / name).read_text())
        assert committed == json.loads(json.dumps(dash)), f"{name} is stale: run `harness dashboards generate`"


def test_four_dashboards_with_eras_joined_and_thresholds():
    dashes = build_dashboards()
    assert len(dashes) == 4
    golden = dashes["vllm-golden-signals.json"]
    q = dict(panel_queries(golden))
    assert "ray_vllm_kv_cache_usage_perc" in q["KV-cache usage (max over replicas)"]
    assert "vllm:gpu_cache_usage_perc" in q["KV-cache usage (max over replicas)"]  # old era, same panel
    assert "ray_vllm:time_per_output_token_seconds_bucket" in q["Inter-token latency"]
    kv = next(p for p in golden["panels"] if p["title"].startswith("KV-cache"))
    assert kv["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_fix_ray_dashboard_drops_cluster_filter():
    dash = {
        "templating": {"list": [{"name": "SessionName"}, {"name": "Cluster"}]},
        "panels": [
            {
                "targets": [
                    {
                        "expr": 'sum(ray_x{SessionName=~"$SessionName",ray_io_cluster=~"$Cluster",'
                        'instance=~"$Instance"})'
                    },
                    {"expr": 'sum(ray_y{ray_io_cluster=~"$Cluster"}) by (ray_io_cluster)'},
                    {"expr": 'sum(ray_z{ray_io_cluster=~"$Cluster", instance=~"$Instance"})'},
                ]
            }
        ],
    }
    fixed = json.loads(fix_ray_dashboard(json.dumps(dash)))
    exprs = [t["expr"] for t in fixed["panels"][0]["targets"]]
    assert exprs[0] == 'sum(ray_x{SessionName=~"$SessionName",instance=~"$Instance"})'
    assert exprs[1] == "sum(ray_y{}) by (ray_io_cluster)"
    assert exprs[2] == 'sum(ray_z{ instance=~"$Instance"})'
    assert [v["name"] for v in fixed["templating"]["list"]] == ["SessionName"]
