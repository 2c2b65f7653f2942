import pytest

from harness.slo.parse import parse_slo


@pytest.mark.parametrize("text,signal,stat,op,thr", [
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
])
def test_parse(text, signal, stat, op, thr):
    s = parse_slo(text)
    assert (s.signal, s.stat, s.op) == (signal, stat, op)
    assert s.threshold == pytest.approx(thr)


@pytest.mark.parametrize("text,needle", [
    ("ttft.p95 <= 5%", "does not fit 'ttft'"),
    ("ttft.p95 <= 500", "does not fit 'ttft'"),
    ("ttft <= 5ms", "needs a stat"),
    ("ttft.p42 <= 5ms", "not valid for 'ttft'"),
    ("latency.p95 <= 5ms", "unknown signal 'latency'"),
    ("error_rate <= 150%", "ratio must lie in 0..1"),
    ("ttft.p95 => 5ms", "cannot parse"),
    ("", "cannot parse"),
    ("replicas.max == 3", "'==' is not supported"),
])
def test_errors_name_the_fix(text, needle):
    with pytest.raises(ValueError, match=None) as ei:
        parse_slo(text)
    assert needle in str(ei.value)


def test_unknown_signal_lists_valid_ones():
    with pytest.raises(ValueError) as ei:
        parse_slo("foo.p95 < 1ms")
    assert "valid signals:" in str(ei.value) and "ttft" in str(ei.value)
