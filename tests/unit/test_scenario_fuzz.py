"""Property tests: whatever junk the scenario loader is fed, it answers with ScenarioError (or a Scenario), never
with another exception. Covers random text, random nested data, and mutations of every shipped scenario."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.scenario import Scenario, list_scenarios, load_scenario, parse_scenario

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.sampled_from(
        [
            "500ms",
            "1e309",
            "-0",
            "nan",
            "inf",
            ".inf",
            "sim",
            "vllm",
            "external",
            "ttft.p95 <= 500ms",
            "error_rate <= 101%",
            "kv_cache_usage.max < 0.9",
            "x.p95 <= 1",
            "replicas.max >= 1e999",
        ]
    ),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "name",
            "target",
            "load",
            "workload",
            "slos",
            "faults",
            "scrape",
            "engine",
            "model",
            "stages",
            "duration_s",
            "users",
            "at_s",
            "action",
            "sim",
            "vllm",
            "autoscaling",
            "min_replicas",
            "max_replicas",
            "dataset",
        ]
    ),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=25,
)

SHIPPED = [yaml.safe_load(p.read_text()) for p in list_scenarios()]


def _check(data) -> None:
    try:
        out = parse_scenario(data, "<fuzz>")
    except ScenarioError as e:
        assert e.render().strip()  # a message to print
        return
    assert isinstance(out, Scenario)


@SETTINGS
@given(junk)
def test_random_data_only_raises_scenario_error(data):
    _check(data)


@SETTINGS
@given(st.text(max_size=400))
def test_random_text_files_only_raise_scenario_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load_scenario(p)
    except ScenarioError:
        pass


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_files_only_raise_scenario_error(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    p.write_bytes(data)
    try:
        load_scenario(p)
    except ScenarioError:
        pass


def _paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    base = copy.deepcopy(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(base) if p]
        path = draw(st.sampled_from(paths))
        parent = base
        for k in path[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(["replace", "delete", "add_key"]))
        if how == "replace":
            parent[path[-1]] = draw(junk)
        elif how == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(junk)
    return base


@SETTINGS
@given(mutated())
def test_mutated_shipped_scenarios_only_raise_scenario_error(data):
    _check(data)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "name: [",
        "\t- x",
        "a: b: c",
        "--- !!python/object:os.system {}",
        "&a [*a]",
        "name: x\nname: y\n",
        "\x00\x01",
        "? [a, b]\n: 1\n",
        "[" * 5000 + "]" * 5000,
        "a: " + "{b: " * 3000 + "1" + "}" * 3000,  # RecursionError
        "name: x\ntarget: {engine: sim, model: m}\nload: {stages: [{duration_s: 1e400, users: 1}]}\n",
        "name: x\ntarget: {engine: sim, model: m}\nload: {stages: [{duration_s: .nan, users: 1}]}\n",
    ],
)
def test_known_nasty_yaml(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError):
        load_scenario(p)


def test_deeply_nested_data():
    d: list = []
    for _ in range(5000):
        d = [d]
    with pytest.raises(ScenarioError):
        parse_scenario({"name": "x", "target": {"engine": "sim", "model": "m"}, "load": {"stages": d}})
