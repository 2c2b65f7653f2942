import pytest

from harness.slo.parse import parse_slo


@pytest.mark.parametrize(
    "text,signal,stat,op,thr",
    [
        ("ttft.p95 <= 500ms", "ttft", "p95", "<=", 500.0),
        ("itl.p99<0.05s", "itl", "p99", "<", 50.0),
        ("e2e.p99.9 <= 2s", "e2e", "p99.9", "<=", 2000.0),
        ("error_rate <= 1%", "error_rate", "value", "<=", 0.01),
        ("error_rate <= 0.02", "error_rate", "value", "<=", 0.02),
        ("kv_cache_usage.max < 0.9", "kv_cache_usage", "max", "<", 0.9),
        ("kv_cache_usage.max < 90%", "kv_cache_usage", "max", "<", 0.9),
        ("replicas.max >= 3", "replicas", "max", ">=", 3.0),
        ("replica_starts <= 6", "replica_starts", "total", "<=", 6.0),
        ("throughput >= 100", "throughput", "value", ">=", 100.0),
        ("replicas.max == 3", "replicas", "max", "==", 3.0),
        ("flaps.total == 0", "flaps", "total", "==", 0.0),
        ("flaps <= 0", "flaps", "total", "<=", 0.0),
        ("scale_up_time.max <= 60s", "scale_up_time", "max", "<=", 60000.0),
        ("scale_down_time.mean < 90s", "scale_down_time", "mean", "<", 90000.0),
        ("replica_starts.total <= 6", "replica_starts", "total", "<=", 6.0),
        ("churn <= 2", "churn", "value", "<=", 2.0),
        ("goodput.attainment >= 95%", "goodput", "attainment", ">=", 0.95),
        ("goodput.rate >= 2.5", "goodput", "rate", ">=", 2.5),
        ("goodput >= 2.5", "goodput", "rate", ">=", 2.5),
        ("errors.total <= 3", "errors", "total", "<=", 3.0),
        ("requests.rate >= 1", "requests", "rate", ">=", 1.0),
        ("target_replicas.max >= 2", "target_replicas", "max", ">=", 2.0),
    ],
)
def test_parse(text, signal, stat, op, thr):
    s = parse_slo(text)
    assert (s.signal, s.stat, s.op) == (signal, stat, op)
    assert s.threshold == pytest.approx(thr)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("ttft.p95 <= 5%", "does not fit ttft.p95 (time); use ms, s"),
        ("ttft.p95 <= 500", "does not fit ttft.p95"),
        ("ttft <= 5ms", "needs a stat"),
        ("ttft.p42 <= 5ms", "not valid for 'ttft'"),
        ("latency.p95 <= 5ms", "unknown signal 'latency'"),
        ("error_rate <= 150%", "ratio must lie in 0..1"),
        ("ttft.p95 => 5ms", "did you mean '>='"),
        ("ttft.p95 != 5ms", "'!=' is not supported"),
        ("ttft.p95 ~ 5ms", "cannot parse"),
        ("ttft.p95 == 5ms", "'==' is only for counts"),
        ("goodput.attainment >= 95", "ratio must lie in 0..1"),
        ("goodput.rate >= 5%", "does not fit goodput.rate (rate)"),
        ("scale_up_time.max <= 60s @steady", "takes no @scope"),
        ("ttft.p95 <= 5ms @", "cannot parse"),
        ("", "cannot parse"),
    ],
)
def test_errors_name_the_fix(text, needle):
    with pytest.raises(ValueError, match=None) as ei:
        parse_slo(text)
    assert needle in str(ei.value)


def test_unknown_signal_lists_valid_ones():
    with pytest.raises(ValueError) as ei:
        parse_slo("foo.p95 < 1ms")
    assert "valid signals:" in str(ei.value) and "ttft" in str(ei.value)


@pytest.mark.parametrize(
    "text,scope",
    [
        ("ttft.p95 <= 500ms @steady", "steady"),
        ("ttft.p95 <= 500ms@step", "step"),
        ("kv_cache_usage.max < 90% @low", "low"),
        ("goodput.attainment >= 95% @steady", "steady"),
        ("ttft.p95 <= 500ms", None),
    ],
)
def test_scope(text, scope):
    s = parse_slo(text, stage_names=["low", "step"])
    assert s.scope == scope
    assert s.key.endswith(f"@{scope}") if scope else "@" not in s.key


def test_unknown_scope_lists_steady_and_the_stages():
    with pytest.raises(ValueError) as ei:
        parse_slo("ttft.p95 <= 5ms @stepp", stage_names=["low", "step"])
    msg = str(ei.value)
    assert "unknown scope '@stepp'" in msg and "@steady" in msg and "@low" in msg and "@step" in msg


def test_scope_unchecked_without_stage_names():
    assert parse_slo("ttft.p95 <= 5ms @anything").scope == "anything"


def test_wrong_stat_lists_valid_stats():
    with pytest.raises(ValueError) as ei:
        parse_slo("scale_up_time.p95 <= 60s")
    assert "valid: max, min, mean" in str(ei.value)


def test_every_shipped_scenario_slo_still_parses():
    from harness.scenario import list_scenarios, load_scenario

    for p in list_scenarios():
        sc = load_scenario(p)
        for s in sc.slos:
            parse_slo(s, stage_names=[st.name for st in sc.load.stages])
