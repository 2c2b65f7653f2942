"""Autoscaling analysis on synthetic replica series (pure functions, no Ray)."""

import pytest

from harness.slo.autoscaling import analyze, flaps, replica_starts, stage_windows, steady_windows, users_at

T0 = 1000.0
STAGES = [
    {"name": "low", "duration_s": 20, "users": 2, "spawn_rate": 2},
    {"name": "step", "duration_s": 40, "users": 16, "spawn_rate": 8},
    {"name": "down", "duration_s": 30, "users": 2, "spawn_rate": 14},
]


def rows(signal, pts):
    return [{"signal": signal, "t": T0 + t, "value": v} for t, v in pts]


def step_series(changes, end=95):
    """[(t, v), ...] changes → one point per second."""
    out, v = [], changes[0][1]
    ch = dict(changes)
    for t in range(0, end):
        v = ch.get(t, v)
        out.append((float(t), float(v)))
    return out


def test_stage_windows_ramp_and_users_at():
    w = stage_windows(STAGES, T0)
    assert [x.name for x in w] == ["low", "step", "down"]
    assert w[1].start == T0 + 20 and w[1].ramp_end == pytest.approx(T0 + 20 + 14 / 8)
    assert users_at(w, T0 + 10) == 2 and users_at(w, T0 + 20 + 14 / 16) == pytest.approx(9)
    assert users_at(w, T0 + 200) == 0


def test_steady_windows_skip_warmup_and_ramps():
    w = stage_windows(STAGES, T0)
    sw = steady_windows(w, warmup_end=T0 + 5)
    assert sw[0] == (T0 + 5, T0 + 20)
    assert sw[1][0] == pytest.approx(T0 + 21.75)


def _analysis(replicas, target, starts=None):
    r = rows("replicas", replicas) + rows("target_replicas", target)
    r += rows("desired_replicas", target)
    if starts is not None:
        r += rows("replica_starts", starts)
    return analyze(r, STAGES, T0, T0 + 5, T0 + 90)


def test_scale_up_time_from_step_start_to_reaching_target():
    a = _analysis(
        step_series([(0, 1), (33, 2), (38, 3), (70, 1)]),
        step_series([(0, 1), (24, 3), (60, 1)]),
        step_series([(0, 1), (33, 2), (38, 3)]),
    )
    up = a["scale_ups"][0]
    assert up["stage"] == "step" and up["reached"] and up["time_s"] == pytest.approx(18.0)
    assert a["stats"]["scale_up_time"]["max"] == pytest.approx(18000.0)
    down = a["scale_downs"][0]
    assert down["stage"] == "down" and down["time_s"] == pytest.approx(10.0)
    assert a["replica_starts"] == 2 and a["churn_per_min"] == pytest.approx(2 / 1.5)
    assert a["flaps"] == 0 and a["replicas_max"] == 3


def test_scale_up_not_reached_has_no_time_and_a_note():
    a = _analysis(step_series([(0, 1), (30, 2)]), step_series([(0, 1), (24, 3)]))
    assert not a["scale_ups"][0]["reached"]
    assert "scale_up_time" not in a["stats"]
    assert (
        "did not reach 3 within stage 'step'" in a["notes"]["scale_up_time"]
        and "most seen 2" in a["notes"]["scale_up_time"]
    )


def test_no_scale_up_needed_gives_a_note_not_a_time():
    a = _analysis(step_series([(0, 1)]), step_series([(0, 1)]))
    assert a["scale_ups"] == [] and "no scale-up happened" in a["notes"]["scale_up_time"]


def test_flap_is_a_drop_while_load_is_not_stepping_down():
    w = stage_windows(STAGES, T0)
    reps = [(T0 + t, v) for t, v in step_series([(0, 1), (30, 3), (45, 2), (50, 3), (65, 1)])]
    assert flaps(w, reps) == [T0 + 45]  # the drop at 65 s is in the `down` stage: not a flap


def test_replica_starts_counts_increments_and_ignores_vanishing_series():
    cum = [(T0 - 2, 1.0), (T0 + 10, 1.0), (T0 + 30, 3.0), (T0 + 40, 2.0), (T0 + 50, 4.0)]
    assert replica_starts(cum, T0, T0 + 60, 3.0) == 2 + 2
    born = [(T0 + 20, 1.0), (T0 + 30, 2.0)]  # counter first seen inside the load: counts from zero
    assert replica_starts(born, T0, T0 + 60, 3.0) == 2
    assert replica_starts([], T0, T0 + 60, 3.0) is None


def test_analyze_without_replica_series_is_none():
    assert analyze(rows("kv_cache_usage", [(0, 0.1)]), STAGES, T0, T0 + 5, T0 + 90) is None


def test_timeline_aligns_users_and_replicas():
    a = _analysis(step_series([(0, 1), (33, 3)]), step_series([(0, 1), (24, 3)]))
    at = {r["t_s"]: r for r in a["timeline"]}
    assert at[10.0]["users"] == 2 and at[10.0]["replicas"] == 1
    assert at[40.0]["users"] == 16 and at[40.0]["replicas"] == 3 and at[40.0]["target"] == 3
