"""The simulated engine without Ray: timing model, KV cache, preemption, errors, determinism."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time

import pytest

from serve_apps.sim.engine import InjectedFault, SimConfig, SimLLMEngine, StepStats

# Real-time tests on a shared 2-core box: model values are checked exactly through step_trace,
# wall-clock values with a slack that absorbs event-loop lag.
SLACK_S = 0.015


class Recorder:
    def __init__(self) -> None:
        self.steps: list[StepStats] = []
        self.finished = []

    def on_step(self, s: StepStats) -> None:
        self.steps.append(s)

    def on_finish(self, req) -> None:
        self.finished.append(req)


async def _consume(engine: SimLLMEngine, prompt: int, max_tokens: int) -> list[float]:
    """Client view: loop time at which each token was received."""
    loop = asyncio.get_running_loop()
    seen = []
    async for _ in engine.generate(prompt, max_tokens):
        seen.append(loop.time())
    return seen


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_single_request_ground_truth_matches_model_and_client_view():
    cfg = SimConfig(ttft_ms=30, prefill_ms_per_token=0.1, itl_ms=10, itl_ms_per_seq=0.0, jitter_frac=0.05)

    async def main():
        e = SimLLMEngine(cfg)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        seen = await _consume(e, 100, 20)
        await e.close()
        return e, t0, seen

    e, t0, seen = run(main())
    (r,) = e.history
    assert r.generated == 20 and len(r.token_times) == 20 and r.finished_reason == "length"
    # prefill step: 30 + 0.1 * 100 = 40 ms, decode steps 10 ms, each within +-5 % jitter
    durs = [d for _, d, _, _ in e.step_trace]
    assert 0.040 * 0.95 <= durs[0] <= 0.040 * 1.05
    assert all(0.010 * 0.95 <= d <= 0.010 * 1.05 for d in durs[1:])
    assert 0.038 <= r.ttft_s <= 0.042 + SLACK_S
    assert 0.0095 <= statistics.median(r.itls_s) <= 0.0105 + SLACK_S / 3
    # ground truth is what the consumer saw (same loop, released in the same step)
    assert abs(seen[0] - r.first_token) < 0.01
    assert abs((seen[0] - t0) - r.ttft_s) < 0.01
    assert r.queue_s is not None and r.queue_s < 0.01


@pytest.mark.exclusive
def test_absolute_deadlines_do_not_drift():
    cfg = SimConfig(ttft_ms=0, prefill_ms_per_token=0, itl_ms=5, itl_ms_per_seq=0, jitter_frac=0)

    async def main():
        e = SimLLMEngine(cfg)
        await _consume(e, 1, 200)
        await e.close()
        return e

    e = run(main())
    (r,) = e.history
    # tokens never come early: the engine sleeps until each step's deadline
    assert r.token_times[-1] - r.token_times[0] >= 199 * 0.005 - 1e-6
    # each step starts at the previous one's deadline, not at "now": relative sleeps would add the loop's wake-up
    # lag on every step. It resyncs to now only after falling a whole step behind (a loaded machine), so this
    # holds whatever the load.
    steps = [(start, dur) for start, dur, _, _ in e.step_trace]
    assert len(steps) >= 199
    for (s0, d0), (s1, _) in zip(steps, steps[1:]):
        late = s1 - (s0 + d0)
        assert late == pytest.approx(0.0, abs=1e-9) or late >= d0 - 1e-9, (s0, d0, s1)


def test_step_time_grows_with_batch_size():
    cfg = SimConfig(ttft_ms=1, prefill_ms_per_token=0, itl_ms=5, itl_ms_per_seq=1.0, jitter_frac=0)

    async def main(n: int):
        e = SimLLMEngine(cfg)
        await asyncio.gather(*[_consume(e, 8, 10) for _ in range(n)])
        await e.close()
        return e

    one, many = run(main(1)), run(main(20))
    decode_only = [(d, b) for _, d, b, a in many.step_trace if a == 0]
    assert decode_only and all(d == pytest.approx((5 + 1.0 * b) / 1000) for d, b in decode_only)
    assert max(b for _, b in decode_only) == 20
    itl_one = statistics.median(x for r in one.history for x in r.itls_s)
    itl_many = statistics.median(x for r in many.history for x in r.itls_s)
    assert itl_one == pytest.approx(0.006, abs=SLACK_S / 3)
    assert itl_many == pytest.approx(0.025, abs=SLACK_S / 3)


def test_kv_exhaustion_makes_requests_wait():
    # 8 blocks x 4 tokens; each request needs ceil((4 + 1) / 4) = 2 blocks and never more (4 + 4 = 8)
    cfg = SimConfig(
        ttft_ms=2,
        prefill_ms_per_token=0,
        itl_ms=2,
        itl_ms_per_seq=0,
        jitter_frac=0,
        max_num_seqs=16,
        kv_blocks=8,
        block_size=4,
    )

    async def main():
        rec = Recorder()
        e = SimLLMEngine(cfg, observer=rec)
        await asyncio.gather(*[_consume(e, 4, 4) for _ in range(10)])
        await e.close()
        return e, rec

    e, rec = run(main())
    assert max(s.running for s in rec.steps) == 4  # KV-bound, not max_num_seqs-bound
    assert max(s.waiting for s in rec.steps) == 6
    assert max(s.kv_usage for s in rec.steps) == 1.0
    assert rec.steps[-1].kv_usage == 0.0 and rec.steps[-1].running == 0  # idle report at the end
    assert e.preemptions_total == 0
    assert all(r.generated == 4 for r in e.history)
    assert sum(1 for r in e.history if r.queue_s > 0.003) == 6


def test_max_num_seqs_limits_the_batch():
    cfg = SimConfig(ttft_ms=2, prefill_ms_per_token=0, itl_ms=2, itl_ms_per_seq=0, jitter_frac=0, max_num_seqs=3)

    async def main():
        rec = Recorder()
        e = SimLLMEngine(cfg, observer=rec)
        await asyncio.gather(*[_consume(e, 4, 3) for _ in range(7)])
        await e.close()
        return rec

    rec = run(main())
    assert max(s.running for s in rec.steps) == 3
    assert max(s.waiting for s in rec.steps) == 4


def test_preemption_of_most_recently_admitted():
    # 4 blocks x 4 tokens: two requests (4 prompt + 8 output) both fit at first (2 blocks each),
    # then the older one needs a 3rd block for its 9th token: the younger one is preempted.
    cfg = SimConfig(
        ttft_ms=2, prefill_ms_per_token=0, itl_ms=2, itl_ms_per_seq=0, jitter_frac=0, kv_blocks=4, block_size=4
    )

    async def main():
        rec = Recorder()
        e = SimLLMEngine(cfg, observer=rec)
        a = e.submit(4, 8)
        b = e.submit(4, 8)
        await asyncio.gather(*[asyncio.create_task(_drain(e, r)) for r in (a, b)])
        await e.close()
        return e, rec, a, b

    e, rec, a, b = run(main())
    assert e.preemptions_total >= 1
    assert sum(s.preemptions for s in rec.steps) == e.preemptions_total
    assert a.preemptions == 0 and b.preemptions >= 1
    assert a.generated == b.generated == 8
    assert b.finished > a.finished
    # recompute: b's tokens continue after re-admission; the gap spans the preemption
    assert max(b.itls_s) > 2 * 0.002
    assert e.kv_usage == 0.0


async def _drain(e: SimLLMEngine, req) -> int:
    n = 0
    async for _ in e.stream(req):
        n += 1
    return n


def test_error_injection_rate_and_seed():
    def pattern(seed: int, n: int = 2000) -> list[bool]:
        async def main():
            e = SimLLMEngine(SimConfig(error_rate=0.2, seed=seed, kv_blocks=100_000))
            out = []
            for _ in range(n):
                try:
                    req = e.submit(1, 1)
                    e.abort(req)
                    out.append(False)
                except InjectedFault:
                    out.append(True)
            await e.close()
            return out

        return run(main())

    p0 = pattern(0)
    assert 0.17 <= sum(p0) / len(p0) <= 0.23
    assert pattern(0) == p0
    assert pattern(1) != p0


def test_same_seed_same_schedule():
    cfg = SimConfig(
        ttft_ms=3,
        prefill_ms_per_token=0.01,
        itl_ms=2,
        itl_ms_per_seq=0.1,
        jitter_frac=0.3,
        max_num_seqs=4,
        kv_blocks=10,
        block_size=4,
        seed=7,
    )

    def trace(c: SimConfig):
        async def main():
            e = SimLLMEngine(c)
            reqs = [e.submit(3 + i, 5 + i % 3) for i in range(9)]  # all queued before the first step
            await asyncio.gather(*[_drain(e, r) for r in reqs])
            await e.close()
            return [(round(d, 12), b, a) for _, d, b, a in e.step_trace], e.preemptions_total

        return run(main())

    t1, t2 = trace(cfg), trace(cfg)
    assert t1 == t2
    assert trace(dataclasses.replace(cfg, seed=8))[0] != t1


def test_abort_frees_blocks_and_records_reason():
    cfg = SimConfig(ttft_ms=1, itl_ms=2, jitter_frac=0)

    async def main():
        e = SimLLMEngine(cfg)
        agen = e.generate(40, 100)
        async for i in agen:
            if i == 3:
                break
        await agen.aclose()
        await asyncio.sleep(0.01)
        stats = e.stats()
        await e.close()
        return e, stats

    e, stats = run(main())
    assert stats["running"] == 0 and stats["kv_usage"] == 0.0
    (r,) = e.history
    assert r.finished_reason == "abort" and r.generated >= 4


def test_submit_validation():
    async def main():
        e = SimLLMEngine(SimConfig(kv_blocks=2, block_size=4))
        with pytest.raises(ValueError, match="exceeds the KV cache"):
            e.submit(6, 3)
        with pytest.raises(ValueError):
            e.submit(0, 3)
        with pytest.raises(ValueError):
            e.submit(3, 0)
        await e.close()

    run(main())
    with pytest.raises(ValueError, match="unknown sim setting"):
        SimConfig.from_dict({"ttft": 1})
    with pytest.raises(ValueError):
        SimConfig(max_num_seqs=0)


def test_config_mirrors_scenario_model():
    scenario = pytest.importorskip("harness.scenario")
    ours = {f.name: f.default for f in dataclasses.fields(SimConfig)}
    theirs = {k: f.default for k, f in scenario.SimEngine.model_fields.items()}
    assert ours == theirs
    SimConfig.from_dict(scenario.SimEngine().model_dump())  # a scenario's sim dict is accepted as is


def test_engine_overhead_per_token_is_small():
    # 32 sequences x 300 tokens with zero step time: measures pure bookkeeping cost
    cfg = SimConfig(ttft_ms=0, prefill_ms_per_token=0, itl_ms=0, itl_ms_per_seq=0, jitter_frac=0)

    async def main():
        e = SimLLMEngine(cfg)
        t = time.perf_counter()
        await asyncio.gather(*[_consume(e, 10, 300) for _ in range(32)])
        await e.close()
        return time.perf_counter() - t

    assert run(main()) / (32 * 300) < 100e-6


# ---------- app helpers (pure functions; importing the module imports Ray Serve but starts nothing) ----------


def test_request_parsing_and_prompt_estimate():
    app = pytest.importorskip("serve_apps.sim.app")
    p = app.parse_request(
        {
            "model": "m",
            "prompt": "x" * 41,
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
        },
        chat=False,
        served_model="m",
        kv_capacity=1000,
    )
    assert (p.prompt_tokens, p.max_tokens, p.stream, p.include_usage) == (11, 5, True, True)
    p = app.parse_request({"model": "m", "prompt": [1, 2, 3]}, chat=False, served_model="m", kv_capacity=1000)
    assert (p.prompt_tokens, p.max_tokens) == (3, 16)
    p = app.parse_request(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "abcd"},
                {"role": "user", "content": [{"type": "text", "text": "efgh"}]},
            ],
        },
        chat=True,
        served_model="m",
        kv_capacity=100,
    )
    assert (p.prompt_tokens, p.max_tokens) == (2, 98)  # default capped by the KV cache
    for body, status in [
        ({"model": "other", "prompt": "x"}, 404),
        ({"model": "m", "prompt": "x", "max_tokens": 0}, 400),
        ({"model": "m", "prompt": "x", "stream_options": {"include_usage": True}}, 400),
        ({"model": "m", "prompt": ["a", "b"]}, 400),
        ({"model": "m", "prompt": "x", "n": 2}, 400),
        ({"model": "m"}, 400),
    ]:
        with pytest.raises(app.ApiError) as ei:
            app.parse_request(body, chat=False, served_model="m", kv_capacity=1000)
        assert ei.value.status == status, body


def test_autoscaling_mapping():
    app = pytest.importorskip("serve_apps.sim.app")
    cfg = app.autoscaling_config(
        {
            "min_replicas": 1,
            "max_replicas": 3,
            "target_ongoing_requests": 4,
            "upscale_delay_s": 2,
            "downscale_delay_s": 10,
            "look_back_period_s": 3,
        }
    )
    assert cfg == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 4,
        "upscale_delay_s": 2,
        "downscale_delay_s": 10,
        "look_back_period_s": 3,
        "metrics_interval_s": 1.0,
    }
    assert app.autoscaling_config({"initial_replicas": 2, "max_replicas": 2})["initial_replicas"] == 2
    assert app.max_ongoing_requests(SimConfig(max_num_seqs=48), cfg) == 96
    with pytest.raises(ValueError):
        app.autoscaling_config({"replicas": 2})
    scenario = pytest.importorskip("harness.scenario")
    theirs = {k: f.default for k, f in scenario.Autoscaling.model_fields.items()}
    assert theirs == app.AUTOSCALING_DEFAULTS
