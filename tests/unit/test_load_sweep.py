from harness.commands.sweep import Step, candidates, goodput_criteria, render_table, step_scenario
from harness.scenario import parse_scenario


def _base(**load):
    return parse_scenario(
        {
            "name": "s",
            "target": {"engine": "sim", "model": "m"},
            "slos": ["ttft.p95 <= 500ms", "e2e.p99 <= 2s", "error_rate <= 1%"],
            "load": {"warmup_s": 5, "stages": [{"duration_s": 20, "users": 4}], **load},
        }
    )


def _step(v, verdict):
    return Step(value=v, run_dir="x", verdict=verdict, exit_code=0 if verdict == "pass" else 1)


def test_step_scenarios():
    r = step_scenario(_base(), "rate", 8, 9)
    assert r.load.open_loop and r.load.stages[0].rate_rps == 8 and r.load.warmup_s == 3 and r.load.duration_s == 9
    c = step_scenario(
        _base(arrival={"process": "gamma", "burstiness": 0.5, "rate_rps": 2}, stages=[{"duration_s": 20}]),
        "concurrency",
        6,
        12,
    )
    assert not c.load.open_loop and c.load.stages[0].users == 6


def test_bounded_search_ascends_then_bisects():
    vals = [1.0, 2.0, 4.0, 8.0]
    res = {}
    assert candidates(vals, res, 2) == 1.0
    res[1.0], res[2.0] = _step(1.0, "pass"), _step(2.0, "pass")
    assert candidates(vals, res, 2) == 4.0
    res[4.0] = _step(4.0, "fail")
    assert candidates(vals, res, 2) == 3.0  # never tries 8 after 4 failed
    res[3.0] = _step(3.0, "pass")
    assert candidates(vals, res, 2) == 3.5
    res[3.5] = _step(3.5, "fail")
    assert candidates(vals, res, 2) is None  # refine budget spent
    assert candidates(vals, {v: _step(v, "pass") for v in vals}, 2) is None


def test_goodput_criteria_and_table():
    assert goodput_criteria(_base()) == {"ttft_ms": 500.0, "e2e_ms": 2000.0}
    doc = {
        "scenario": "s",
        "mode": "rate",
        "unit": "req/s",
        "goodput_criteria": {"ttft_ms": 500.0},
        "max_passing": 2.0,
        "steps": [
            dict(
                vars(_step(2.0, "pass")),
                ttft_ms={"p50": 10.0, "p95": 20.0, "p99": 30.0},
                itl_ms={},
                achieved_rps=1.9,
                goodput_rps=1.8,
                error_rate=0.0,
            )
        ],
    }
    t = render_table(doc)
    assert "| 2 | pass | 1.90 | 1.80 | 10.0 | 20.0 | 30.0 | - | - | 0.0% | - |" in t and "2 req/s" in t


def test_sweep_stops_at_the_first_saturated_step(tmp_path, monkeypatch):
    import contextlib
    from types import SimpleNamespace

    import harness.commands.repeat as repeat_mod
    import harness.run.pipeline as pipeline_mod
    from harness.commands.sweep import run_sweep

    tried = []

    def fake_run(sc, opts, ui):
        rate = sc.load.stages[0].rate_rps
        tried.append(rate)
        d = tmp_path / f"step-{rate:g}"
        d.mkdir()
        saturated = rate >= 4
        summary = {
            "verdict": "fail" if saturated else "pass",
            "client": {"requests": 10, "requests_per_s": min(rate, 3.1)},
            "slos": [],
        }
        if saturated:
            summary["stopped_early"] = {
                "trigger": "saturation",
                "at_s": 9.5,
                "evidence": {"capacity_rps": 3.1},
                "detail": "x",
            }
        return SimpleNamespace(run_dir=d, exit_code=1 if saturated else 0, summary=summary)

    monkeypatch.setattr(repeat_mod, "held_stack", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(pipeline_mod, "run", fake_run)
    base = _base(
        arrival={"process": "poisson"}, stages=[{"duration_s": 20, "rate_rps": 1}], stop_when={"saturation": True}
    )
    doc, _ = run_sweep(base, "rate", [1, 2, 4, 8, 16], results_dir=tmp_path, step_duration_s=20, refine=2, ui=None)
    assert tried == [1, 2, 4]  # no larger rate, no bisection after the saturated step
    assert doc["capacity"] == {
        "saturated_at": 4.0,
        "unit": "req/s",
        "capacity_rps": 3.1,
        "last_unsaturated": 2.0,
        "stopped_at_s": 9.5,
    }
    assert doc["steps"][-1]["saturated"] and "capacity ~3.10 req/s" in render_table(doc)
