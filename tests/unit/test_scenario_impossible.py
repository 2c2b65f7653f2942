"""Impossible scenarios (issue 12, item 9): each class is exit 2 from `run` and `scenarios validate`, with the file,
the path in the scenario, what is wrong and how to fix it, and no traceback. Nothing starts, nothing is written."""

from __future__ import annotations

import pytest

from harness.cli import app

GOOD = """name: t
target: {engine: sim, model: m}
load:
  stages: [{duration_s: 5, users: 1}]
slos: [ttft.p95 <= 500ms]
"""
EXT = GOOD.replace("engine: sim, model: m", "engine: external, model: m, url: 'URL'")
OPEN = GOOD.replace("stages: [{duration_s: 5, users: 1}]", "arrival: {rate_rps: 2}\n  stages: [{duration_s: 5}]")
BOMB = "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else '1, 1, 1, 1, 1, 1, 1, 1, 1, 1'}]\n" for i in range(6)
)

# (case, scenario text, words the message must contain: the path in the scenario, what is wrong, the fix)
IMPOSSIBLE = [
    # YAML the plain loader accepts silently
    ("duplicated top-level key", GOOD + "name: u\n", ["line 6", "name", "given twice", "line 1", "merge them"]),
    (
        "duplicated nested key",
        GOOD.replace("users: 1}", "users: 1, users: 50}"),
        ["load.stages[0].users", "given twice"],
    ),
    ("second slos key empties the gate", GOOD + "slos: []\n", ["slos", "given twice"]),
    ("alias bomb", BOMB, ["expands to more than", "aliases"]),
    ("recursive alias", "a: &a [*a]\n", ["expands to more than"]),
    ("tab indentation", "name: t\n\ttarget: {}\n", ["line 2", "tabs"]),
    ("two documents", GOOD + "---\n" + GOOD, ["another document", "one scenario per file"]),
    # URLs
    ("url without scheme", EXT.replace("URL", "127.0.0.1:8000"), ["target", "no scheme", "http://127.0.0.1:8000"]),
    ("url with mistyped scheme", EXT.replace("URL", "http//127.0.0.1:8000"), ["target", "malformed scheme"]),
    ("url with bad scheme", EXT.replace("URL", "ftp://127.0.0.1:8000"), ["target", "scheme 'ftp'", "http, https"]),
    ("url without host", EXT.replace("URL", "http://:8000"), ["target", "no host"]),
    ("url port out of range", EXT.replace("URL", "http://127.0.0.1:70000"), ["target", "'70000'", "1-65535"]),
    ("url port not a number", EXT.replace("URL", "http://127.0.0.1:80a"), ["target", "port", "1-65535"]),
    ("url bad ipv4", EXT.replace("URL", "http://300.1.1.1:80"), ["target", "IPv4"]),
    ("url with spaces", EXT.replace("URL", "http://my host:80"), ["target", "whitespace"]),
    ("url with credentials", EXT.replace("URL", "http://u:pw@127.0.0.1:80"), ["target", "credentials", "api_key_env"]),
    # magnitudes no machine can honour (bounds in the field descriptions)
    ("users", GOOD.replace("users: 1", "users: 10000000"), ["load.stages[0].users", "100000", "description"]),
    ("stage duration", GOOD.replace("duration_s: 5", "duration_s: 9000000"), ["load.stages[0].duration_s", "604800"]),
    (
        "total duration",
        GOOD.replace("[{duration_s: 5, users: 1}]", "[{duration_s: 400000, users: 1}, {duration_s: 400000, users: 1}]")
        + "scrape: {step_s: 100}\n",
        ["load", "7 days"],
    ),
    ("open-loop rate", OPEN.replace("rate_rps: 2", "rate_rps: 5000000"), ["load.arrival.rate_rps", "100000"]),
    (
        "arrivals past the schedule",
        OPEN.replace("rate_rps: 2", "rate_rps: 90000").replace("duration_s: 5", "duration_s: 600"),
        ["load", "arrivals", "max_requests"],
    ),
    (
        "output tokens",
        GOOD + "workload: {output_tokens: {mean: 100000000}}\n",
        ["workload.output_tokens.mean", "1048576"],
    ),
    (
        "prompt token range inverted",
        GOOD + "workload: {prompt_tokens: {mean: 100, min: 200, max: 50}}\n",
        ["workload.prompt_tokens", "max (50) must be >= min (200)"],
    ),
    (
        "mean outside the clip range",
        GOOD + "workload: {prompt_tokens: {mean: 100, max: 50}}\n",
        ["workload.prompt_tokens", "mean (100)", "between"],
    ),
    (
        "replicas",
        GOOD.replace("model: m}", "model: m, autoscaling: {max_replicas: 100000}}"),
        ["target.autoscaling.max_replicas", "1000"],
    ),
    (
        "tensor parallel",
        GOOD.replace(
            "engine: sim, model: m", "engine: vllm, model: m, vllm: {model_source: x, tensor_parallel_size: 4096}"
        ),
        ["target.vllm.tensor_parallel_size", "256"],
    ),
    (
        "warmup longer than the stages",
        GOOD.replace("load:\n", "load:\n  warmup_s: 50\n"),
        ["load", "warmup_s", "shorter"],
    ),
    (
        "prometheus point limit",
        GOOD.replace("duration_s: 5", "duration_s: 86400"),
        ["scrape.step_s", "11000", "step_s >="],
    ),
    (
        "shared-prefix pool",
        GOOD + "workload: {shared_prefix: {num_prefixes: 10000, prefix_tokens: 10, suffixes_per_prefix: 10000}}\n",
        ["workload.shared_prefix", "1000000"],
    ),
    ("name too long for a folder", GOOD.replace("name: t", "name: " + "x" * 300), ["name", "at most 100"]),
    ("negative seed", GOOD + "workload: {seed: -1}\n", ["workload.seed", "greater than or equal to 0"]),
    # types pydantic would coerce
    (
        "boolean as a number",
        GOOD.replace("users: 1", "users: yes"),
        ["load.stages[0]", "users", "boolean, not a number"],
    ),
    (
        "boolean duration",
        GOOD.replace("duration_s: 5", "duration_s: true"),
        ["load.stages[0]", "duration_s", "boolean"],
    ),
    (
        "unit in a number",
        GOOD.replace("duration_s: 5", "duration_s: 10s"),
        ["load.stages[0].duration_s", "without a unit"],
    ),
    ("nan", GOOD.replace("duration_s: 5", "duration_s: .nan"), ["load.stages[0].duration_s", "finite"]),
    ("non-string key", GOOD + "1: x\n", ["Keys should be strings"]),
    # sections and names that would be ignored or cannot work
    (
        "vllm section on sim",
        GOOD.replace("model: m}", "model: m, vllm: {model_source: x}}"),
        ["target", "`vllm:`", "remove the section"],
    ),
    (
        "sim section on external",
        EXT.replace("URL", "http://127.0.0.1:9").replace("'}", "', sim: {}}"),
        ["target", "`sim:`"],
    ),
    (
        "route prefix without slash",
        GOOD.replace("model: m}", "model: m, route_prefix: llm}"),
        ["target", "route_prefix", "starting with '/'"],
    ),
    (
        "api key env not a name",
        GOOD.replace("model: m}", "model: m, api_key_env: 'MY KEY'}"),
        ["target.api_key_env", "environment variable name"],
    ),
    (
        "stage name unusable in a scope",
        GOOD.replace("{duration_s: 5", "{name: 'my stage', duration_s: 5"),
        ["load.stages[0].name", "letters, digits"],
    ),
    ("empty stage list", GOOD.replace("[{duration_s: 5, users: 1}]", "[]"), ["load.stages", "at least 1"]),
    ("no user in any stage", GOOD.replace("users: 1", "users: 0"), ["load", "no request would be sent"]),
    (
        "no arrival in any stage",
        OPEN.replace("{duration_s: 5}", "{duration_s: 5, rate_rps: 0}"),
        ["load", "no request would arrive"],
    ),
    (
        "fault kills more replicas than exist",
        GOOD + "faults: [{at_s: 1, action: kill_replica, count: 3}]\n",
        ["faults[0].count", "max_replicas"],
    ),
    (
        "fault after the load ends",
        GOOD + "faults: [{at_s: 5, action: kill_replica}]\n",
        ["faults[0].at_s", "inside the load"],
    ),
    # SLOs that gate nothing
    (
        "negative SLO threshold",
        GOOD.replace("ttft.p95 <= 500ms", "ttft.p95 <= -5ms"),
        ["slos: [0]", "negative threshold"],
    ),
    (
        "contradicting SLOs",
        GOOD.replace("[ttft.p95 <= 500ms]", "[ttft.p95 <= 100ms, ttft.p95 >= 200ms]"),
        ["slos[1]", "contradicts", "never pass", "keep one"],
    ),
    (
        "scope inside the warmup",
        GOOD.replace("load:\n", "load:\n  warmup_s: 6\n")
        .replace(
            "[{duration_s: 5, users: 1}]", "[{name: a, duration_s: 5, users: 1}, {name: b, duration_s: 5, users: 1}]"
        )
        .replace("500ms]", "500ms @a]"),
        ["slos[0]", "inside load.warmup_s", "shorten the warmup"],
    ),
    ("scope naming no stage", GOOD.replace("500ms]", "500ms @nostage]"), ["slos", "unknown scope"]),
    (
        "goodput SLO without criteria",
        GOOD.replace("[ttft.p95 <= 500ms]", "[goodput.attainment >= 90%]"),
        ["slos[0]", "goodput:"],
    ),
]


@pytest.mark.parametrize("case,text,words", IMPOSSIBLE, ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_scenario_is_bad_input(runner, tmp_path, case, text, words):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    for args in (["scenarios", "validate", str(p)], ["run", str(p), "--results-dir", str(tmp_path / "res")]):
        res = runner.invoke(app, args)
        out = res.output + (res.stderr if res.stderr_bytes is not None else "")
        assert res.exit_code == 2, (args[0], res.exit_code, out)
        assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
        for w in [str(p), *words]:
            assert w in out, (args[0], w, out)
    assert not (tmp_path / "res").exists()  # nothing started, nothing written


def test_bounds_leave_real_scenarios_alone(runner, tmp_path):
    """Large but real: a 24 h soak at 2000 req/s with 32k-token prompts and 64 replicas, merge keys, a BOM."""
    p = tmp_path / "soak.yaml"
    p.write_text(
        "\ufeff"
        + """name: soak
target: {engine: sim, model: m, autoscaling: {min_replicas: 1, max_replicas: 64}}
workload: {prompt_tokens: {mean: 32000, max: 128000}, output_tokens: {mean: 512, min: 1, max: 4096}}
base: &stage {duration_s: 43200}
load:
  arrival: {rate_rps: 100}
  stages:
    - {<<: *stage, name: day, rate_rps: 100}
    - {<<: *stage, name: night, rate_rps: 50, ramp_to_rps: 100}
scrape: {step_s: 15}
slos: [ttft.p95 <= 2s @day, ttft.p95 >= 1ms, error_rate <= 1%]
""".replace("base: &stage {duration_s: 43200}\n", "").replace("{<<: *stage, ", "{duration_s: 43200, ")
    )
    res = runner.invoke(app, ["scenarios", "validate", str(p)])
    assert res.exit_code == 0, res.output + (res.stderr if res.stderr_bytes is not None else "")


def test_merge_keys_are_not_duplicates(tmp_path):
    from harness.scenario import load_scenario

    p = tmp_path / "m.yaml"
    p.write_text(
        "name: t\ntarget: {engine: sim, model: m}\nload:\n  stages:\n"
        "    - &s {name: a, duration_s: 5, users: 1}\n    - {<<: *s, name: b, users: 2}\nslos: [ttft.p95 <= 1s]\n"
    )
    sc = load_scenario(p)
    assert [(s.name, s.users) for s in sc.load.stages] == [("a", 1), ("b", 2)]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--ray-address", "127.0.0.1", "--prometheus-url", "http://127.0.0.1:9090"], ["--ray-address", "no port"]),
        (
            ["--ray-address", "http://127.0.0.1:6379", "--prometheus-url", "http://127.0.0.1:9090"],
            ["--ray-address", "ray://"],
        ),
        (
            ["--ray-address", "127.0.0.1:6379", "--prometheus-url", "localhost:9090"],
            ["--prometheus-url", "no scheme", "http://localhost:9090"],
        ),
        (
            ["--ray-address", "127.0.0.1:6379", "--prometheus-url", "http://127.0.0.1:99999"],
            ["--prometheus-url", "1-65535"],
        ),
        (["--endpoint-url", "http://:8000"], ["--endpoint-url", "no host"]),
    ],
)
def test_malformed_addresses_on_the_command_line(runner, tmp_path, args, words):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    res = runner.invoke(app, ["run", str(p), "--results-dir", str(tmp_path / "res"), *args])
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exit_code == 2 and "Traceback" not in out, out
    for w in words:
        assert w in out, (w, out)
    assert not (tmp_path / "res").exists()
    if "--endpoint-url" not in args:
        v = runner.invoke(app, ["verify", *args])
        assert v.exit_code == 2 and words[0] in v.output + (v.stderr if v.stderr_bytes is not None else "")


def test_url_checks_accept_real_addresses():
    from harness.urls import ray_address_problem, url_problem

    for u in (
        "http://127.0.0.1:8000",
        "https://api.example.com/v1",
        "http://[::1]:9090",
        "http://prom:9090/",
        "http://my-host.internal",
    ):
        assert url_problem(u) is None, u
    for a in ("127.0.0.1:6379", "ray://head:10001", "auto", "head.cluster.local:6379", "[::1]:6379"):
        assert ray_address_problem(a) is None, a


def test_api_key_env_unset_fails_before_anything_starts(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_NO_SUCH_KEY", raising=False)
    p = tmp_path / "k.yaml"
    p.write_text(EXT.replace("URL", "http://127.0.0.1:9").replace("'}", "', api_key_env: HARNESS_TEST_NO_SUCH_KEY}"))
    res = runner.invoke(app, ["run", str(p), "--results-dir", str(tmp_path / "res")])
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exit_code == 2 and "target.api_key_env" in out and "export HARNESS_TEST_NO_SUCH_KEY" in out, out
    assert not (tmp_path / "res").exists()
