from harness.load.shape import stage_ends, stage_index, stage_label, stage_tick

STAGES = [
    {"name": "warm", "duration_s": 5, "users": 2, "spawn_rate": 2.0},
    {"name": "peak", "duration_s": 10, "users": 8, "spawn_rate": 4.0},
    {"name": "idle", "duration_s": 3, "users": 0, "spawn_rate": 1.0},
]


def test_tick_sequence_follows_stages_then_none():
    ticks = [stage_tick(STAGES, t) for t in range(0, 20)]
    assert ticks[:5] == [(2, 2.0)] * 5
    assert ticks[5:15] == [(8, 4.0)] * 10
    assert ticks[15:18] == [(0, 1.0)] * 3
    assert ticks[18:] == [None, None]


def test_boundaries_belong_to_the_next_stage():
    ends = stage_ends(STAGES)
    assert ends == [5.0, 15.0, 18.0]
    assert stage_index(ends, 4.999) == 0
    assert stage_index(ends, 5.0) == 1
    assert stage_index(ends, 18.0) is None


def test_stage_label_clamps_before_start_and_after_end():
    names, ends = [s["name"] for s in STAGES], stage_ends(STAGES)
    assert stage_label(names, ends, -0.5) == "warm"
    assert stage_label(names, ends, 7.0) == "peak"
    assert stage_label(names, ends, 99.0) == "idle"  # started during the drain
