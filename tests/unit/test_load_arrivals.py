import statistics

import pytest

from harness.load.arrivals import arrival_offsets, expected_arrivals
from harness.load.shape import open_tick


def _offs(stages, **kw):
    return list(arrival_offsets(stages, **kw))


def test_poisson_rate_and_bounds():
    st = [{"duration_s": 200, "rate_rps": 5}]
    t = _offs(st, process="poisson", seed=1)
    assert all(0 <= x <= 200 for x in t) and t == sorted(t)
    assert abs(len(t) - 1000) < 4 * 1000**0.5
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.1)  # CV of exponential


def test_gamma_burstiness_sets_cv():
    st = [{"duration_s": 400, "rate_rps": 5}]
    for k in (0.25, 4.0):
        t = _offs(st, process="gamma", burstiness=k, seed=2)
        gaps = [b - a for a, b in zip(t, t[1:])]
        assert statistics.mean(gaps) == pytest.approx(0.2, rel=0.15)
        assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(k**-0.5, rel=0.2)


def test_constant_steps_and_pause():
    st = [{"duration_s": 2, "rate_rps": 2}, {"duration_s": 2, "rate_rps": 0}, {"duration_s": 1, "rate_rps": 4}]
    t = _offs(st, process="constant")
    # the pause keeps the phase: the next arrival comes one (new) gap after the pause
    assert t == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 4.25, 4.5, 4.75, 5.0])


def test_linear_ramp_is_exact():
    st = [{"duration_s": 10, "rate_rps": 0, "ramp_to_rps": 10}]
    t = _offs(st, process="constant")
    assert len(t) == 51  # area 50: u = 0, 1, ..., 50 (both ends of the schedule included)
    assert expected_arrivals(st) == 50
    # with rate r(t)=t, Λ(t)=t²/2: arrival k at sqrt(2k)
    assert t[8] == pytest.approx((2 * 8) ** 0.5)


def test_processes_share_and_interleave():
    st = [{"duration_s": 10, "rate_rps": 4}]
    a = _offs(st, process="constant", share=0.5, phase=0.0)
    b = _offs(st, process="constant", share=0.5, phase=0.5)
    merged = sorted(a + b)
    assert len(merged) in (40, 41) and max(y - x for x, y in zip(merged, merged[1:])) == pytest.approx(0.25)


def test_limit_and_seed_reproducible():
    st = [{"duration_s": 100, "rate_rps": 50}]
    assert len(_offs(st, process="poisson", limit=7)) == 7
    assert _offs(st, process="poisson", seed=3)[:5] == _offs(st, process="poisson", seed=3)[:5]
    assert _offs(st, process="poisson", seed=3)[:5] != _offs(st, process="poisson", seed=4)[:5]


def test_open_tick():
    assert open_tick([5.0, 10.0], 7.0, 2) == (2, 1000.0)
    assert open_tick([5.0, 10.0], 10.5, 2) is None
