"""load.stop_when: the saturation rule and max_errors as pure functions, and StopWatch fed by a queue model."""

from __future__ import annotations

import heapq
import random

import pytest

from harness.errors import ScenarioError
from harness.load.stop import SETTLE_S, StopWatch, WindowStats, detection_bound_s, saturation_trigger, window_saturated
from harness.scenario import SaturationRule, StopWhen, parse_scenario

RULE = SaturationRule()


def _w(i, sent, finished, in_flight, ttft, w=5.0):
    return WindowStats(i, i * w, (i + 1) * w, sent, finished, 0, in_flight, ttft)


def test_window_rule_needs_all_three_conditions():
    prev = _w(0, 50, 50, 5, 100.0)
    assert window_saturated(prev, _w(1, 50, 30, 25, 200.0), RULE)
    assert not window_saturated(prev, _w(1, 50, 46, 25, 200.0), RULE)  # achieved within 10% of offered
    assert not window_saturated(prev, _w(1, 50, 30, 5, 200.0), RULE)  # queue did not grow
    assert not window_saturated(prev, _w(1, 50, 30, 25, 105.0), RULE)  # TTFT grew < 10%
    assert not window_saturated(prev, _w(1, 4, 1, 25, 200.0), RULE)  # too few requests to judge
    assert not window_saturated(prev, _w(1, 50, 30, 25, None), RULE)


def test_trigger_wants_consecutive_windows():
    ws = [_w(0, 50, 50, 5, 100.0), _w(1, 50, 30, 25, 200.0), _w(2, 50, 30, 45, 300.0)]
    assert saturation_trigger(ws, RULE) is None  # two saturated windows, rule wants three
    ws.append(_w(3, 50, 30, 65, 400.0))
    hit = saturation_trigger(ws, RULE)
    assert hit is not None and [w.index for w in hit] == [0, 1, 2, 3]
    ws.append(_w(4, 50, 49, 66, 400.0))  # the streak is broken by the newest window
    assert saturation_trigger(ws, RULE) is None


def _queue_model(rate, servers, service_s, duration_s, seed, err_p=0.0, ttft0_ms=30.0):
    """Poisson arrivals into `servers` FCFS servers of fixed service time: (send, finish, ttft_ms, error) each."""
    rng = random.Random(seed)
    t, free, out = 0.0, [0.0] * servers, []
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return out
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service_s)
        out.append((t, start + service_s, (start - t) * 1000 + ttft0_ms, rng.random() < err_p))


def _watch(reqs, stop_when, duration_s, t0=1000.0, poll_s=0.2, flush_lag_s=0.5):
    """Feed a StopWatch as the runner does: rows visible `flush_lag_s` after they finish, counters live."""
    watch = StopWatch(stop_when, t0)
    seen = 0
    reqs = sorted(reqs, key=lambda r: r[1])
    now = 0.0
    while now < duration_s:
        now += poll_s
        rows = []
        while seen < len(reqs) and reqs[seen][1] + flush_lag_s <= now:
            s, f, ttft, err = reqs[seen]
            rows.append({"t_start_s": t0 + s, "e2e_ms": (f - s) * 1000, "ttft_ms": ttft, "error": "x" if err else None})
            seen += 1
        sent = sum(1 for r in reqs if r[0] <= now)
        done = sum(1 for r in reqs if r[1] <= now)
        fired = watch.feed(rows, t0 + now, sent, done)
        if fired is not None:
            return fired
    return None


# capacity = servers / service_s = 8 / 0.5 s = 16 req/s
SERVERS, SERVICE_S = 8, 0.5


@pytest.mark.parametrize("seed", range(20))
def test_no_false_stop_under_capacity(seed):
    reqs = _queue_model(0.6 * SERVERS / SERVICE_S, SERVERS, SERVICE_S, 60.0, seed)
    assert _watch(reqs, StopWhen(saturation=RULE), 60.0) is None


@pytest.mark.parametrize("seed", range(5))
def test_overload_stops_within_the_bound(seed):
    reqs = _queue_model(2.0 * SERVERS / SERVICE_S, SERVERS, SERVICE_S, 60.0, seed)
    fired = _watch(reqs, StopWhen(saturation=RULE), 60.0)
    assert fired is not None and fired.trigger == "saturation"
    # saturated from t=0 (queue grows from the first second): stop within the documented bound
    assert fired.at_s <= detection_bound_s(RULE), fired
    assert fired.at_s >= RULE.windows * RULE.window_s + SETTLE_S  # needs `windows` full windows after the first
    cap = fired.evidence["capacity_rps"]
    assert cap == pytest.approx(SERVERS / SERVICE_S, rel=0.15)
    ws = fired.evidence["windows"]
    assert len(ws) == RULE.windows + 1 and all(b["in_flight"] > a["in_flight"] for a, b in zip(ws, ws[1:]))


def test_max_errors_count_fires_at_the_count():
    reqs = _queue_model(10.0, 8, 0.2, 60.0, 1, err_p=0.2)
    fired = _watch(reqs, StopWhen(max_errors=10), 60.0)
    assert fired is not None and fired.trigger == "max_errors"
    nth = sorted(f for _, f, _, e in reqs if e)[9]
    assert fired.evidence["errors"] >= 10 and fired.evidence["nth_error_at_s"] == pytest.approx(nth, abs=1e-3)
    assert nth <= fired.at_s <= nth + 0.5 + 0.2 + 1e-6  # flush lag + one poll


def test_max_errors_share_over_the_window():
    ok = _queue_model(10.0, 8, 0.2, 60.0, 2, err_p=0.02)
    assert _watch(ok, StopWhen(max_errors="20%"), 60.0) is None
    bad = _queue_model(10.0, 8, 0.2, 60.0, 2, err_p=0.5)
    fired = _watch(bad, StopWhen(max_errors="20%"), 60.0)
    assert fired is not None and fired.evidence["share"] >= 0.2 and fired.evidence["finished"] >= 10


def _sc(stop_when, open_loop=True, duration=30):
    load = {"stages": [{"duration_s": duration, "rate_rps": 4}], "arrival": {}} if open_loop else None
    load = load or {"stages": [{"duration_s": duration, "users": 2}]}
    return {"name": "s", "target": {"engine": "sim", "model": "m"}, "load": {**load, "stop_when": stop_when}}


def test_scenario_stop_when_valid():
    sc = parse_scenario(_sc({"max_errors": 5, "saturation": True}), "t")
    assert sc.load.stop_when.max_errors_count == 5 and sc.load.stop_when.saturation == SaturationRule()
    sc = parse_scenario(_sc({"max_errors": "2.5%", "saturation": {"window_s": 2, "windows": 4}}), "t")
    assert sc.load.stop_when.max_errors_share == pytest.approx(0.025) and sc.load.stop_when.saturation.windows == 4


@pytest.mark.parametrize(
    "stop_when, open_loop, path",
    [
        ({"saturation": True}, False, "load.stop_when.saturation"),  # closed loop has no offered rate
        ({"max_errors": 0}, True, "max_errors"),
        ({"max_errors": "150%"}, True, "max_errors"),
        ({"max_errors": "lots"}, True, "max_errors"),
        ({"max_errors": True}, True, "max_errors"),
        ({"saturation": {"window_s": 20, "windows": 3}}, True, "longer than the load"),
        ({"saturation": {"windows": 1}}, True, "windows"),
        ({"since": 3}, True, "since"),
    ],
)
def test_scenario_stop_when_invalid(stop_when, open_loop, path):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(_sc(stop_when, open_loop), "t.yaml")
    assert any(path in p for p in e.value.problems), e.value.problems
