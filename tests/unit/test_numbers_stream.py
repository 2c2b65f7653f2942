"""Per-token ITL vs inter-chunk gaps, in-band stream errors, replies without content: the client's stream parser
against known streams and against the sim engine's own per-token timeline."""

import asyncio
import json
import statistics
from types import SimpleNamespace

import pytest

from harness.load.stream import StreamState, build_sample, per_token_gaps


def _chunk(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _delta(delta, usage=None):
    obj = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    if usage is not None:
        obj["usage"] = {"prompt_tokens": 5, "completion_tokens": usage, "total_tokens": 5 + usage}
    return _chunk(obj)


def feed(lines, times=None):
    st = StreamState(keep_payloads=True)
    for i, ln in enumerate(lines):
        st.feed(ln, float(times[i] if times else i))
    return st


def test_sse_error_event_is_a_failed_request():
    st = feed(
        [_delta({"content": "a"}), b"event: error\n", b'data: {"message":"engine overloaded"}\n', b"data: [DONE]\n"]
    )
    assert st.finish_error() == "stream_error"


def test_error_object_with_usage_is_a_failed_request():
    st = feed(
        [
            _delta({"content": "a"}, 1),
            _chunk({"error": {"message": "x"}, "usage": {"completion_tokens": 1}}),
            b"data: [DONE]\n",
        ]
    )
    assert st.finish_error() == "stream_error"


def test_tool_call_only_reply_is_not_an_empty_stream():
    tc = {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    st = feed([_delta({"role": "assistant", "content": ""}), _delta(tc), b"data: [DONE]\n"])
    assert st.finish_error() is None and st.token_times == [1.0] and st.first_content is None


def test_reasoning_then_content_records_both_first_tokens():
    st = feed(
        [
            _delta({"reasoning_content": "hmm"}),
            _delta({"reasoning_content": " so"}),
            _delta({"content": "ok"}),
            b"data: [DONE]\n",
        ]
    )
    assert st.finish_error() is None and st.token_times == [0.0, 1.0, 2.0] and st.first_content == 2.0
    row = build_sample(
        t_start=0.0,
        p_start=-0.5,
        p_end=3.0,
        token_times=st.token_times,
        usage=None,
        status=200,
        error=None,
        prompt_words=1,
        max_tokens=3,
        worker=1,
        first_content=st.first_content,
    )
    assert row["ttft_ms"] == 500.0 and row["ttft_content_ms"] == 2500.0


def test_reasoning_only_reply_is_not_an_empty_stream():
    assert feed([_delta({"reasoning_content": "hmm"}), b"data: [DONE]\n"]).finish_error() is None


def test_continuous_usage_gives_tokens_per_event_and_per_token_itl():
    # role chunk, then events carrying 1, 3 and 2 tokens 10, 30 and 20 ms apart: 10 ms per token throughout
    lines = [
        _delta({"role": "assistant", "content": ""}, 0),
        _delta({"content": "a"}, 1),
        _delta({"content": "b c d"}, 4),
        _delta({"content": "e f"}, 6),
        b"data: [DONE]\n",
    ]
    st = feed(lines, [0.0, 0.1, 0.13, 0.15, 0.15])
    assert st.finish_error() is None and st.usage["completion_tokens"] == 6  # from the last event's usage
    assert st.count_with(None) == "usage" and st.event_tokens == [1, 3, 2]
    row = build_sample(
        t_start=0.0,
        p_start=0.0,
        p_end=0.16,
        token_times=st.token_times,
        usage=st.usage,
        status=200,
        error=None,
        prompt_words=1,
        max_tokens=6,
        worker=1,
        event_tokens=st.event_tokens,
        token_count_source="usage",
    )
    assert row["itl_ms"] == pytest.approx([10.0] * 5)
    assert row["chunk_gap_ms"] == pytest.approx([30.0, 20.0]) and row["multi_token_events"] == 2
    assert row["output_tokens"] == 6


def test_without_usage_the_tokenizer_counts_each_event():
    st = feed([_delta({"content": "a"}), _delta({"content": "b c d"}), b"data: [DONE]\n"], [0.0, 0.03, 0.03])
    assert st.count_with(lambda s: len(s.split())) == "tokenizer" and st.event_tokens == [1, 3]
    assert per_token_gaps(st.token_times, st.event_tokens) == pytest.approx([10.0] * 3)
    assert feed([_delta({"content": "a"}), b"data: [DONE]\n"]).count_with(None) == "events"


def test_zero_token_events_pass_their_gap_on():
    assert per_token_gaps([0.0, 0.01, 0.03], [1, 0, 2]) == pytest.approx([15.0, 15.0])


# ---------- against the sim engine's own timeline ----------


def _sim_stream(coalesce: bool, continuous: bool, lag_s: float):
    app = pytest.importorskip("serve_apps.sim.app")
    from serve_apps.sim.engine import SimConfig, SimLLMEngine

    cls = app.SimLLM.func_or_class
    cfg = SimConfig(ttft_ms=5.0, itl_ms=4.0, jitter_frac=0.0, coalesce_events=coalesce)

    async def main():
        obj = cls.__new__(cls)
        served = SimpleNamespace(name="m", json='"m"', config=cfg, engine=SimLLMEngine(cfg))  # one served model
        obj.engine = served.engine
        p = app.ParsedRequest(8, 40, True, True, continuous)
        req = obj.engine.submit(8, 40)
        st = StreamState()
        loop = asyncio.get_running_loop()
        async for piece in obj._sse(served, req, p, True, app.ReplyPlan(40)):
            now = loop.time()
            for ln in piece.encode().split(b"\n"):
                st.feed(ln, now)
            await asyncio.sleep(lag_s)  # a consumer that falls behind: the engine runs ahead
        await obj.engine.close()
        return st, req

    return asyncio.run(main())


def test_sim_coalesced_events_give_true_per_token_itl_with_continuous_usage():
    st, req = _sim_stream(coalesce=True, continuous=True, lag_s=0.02)
    assert st.finish_error() is None
    truth = statistics.mean(x * 1000.0 for x in req.itls_s)  # the engine's own per-token gaps
    assert st.count_with(None) == "usage" and sum(st.event_tokens) == 40
    row = build_sample(
        t_start=0.0,
        p_start=0.0,
        p_end=1.0,
        token_times=st.token_times,
        usage=st.usage,
        status=200,
        error=None,
        prompt_words=1,
        max_tokens=40,
        worker=1,
        event_tokens=st.event_tokens,
    )
    per_token = statistics.mean(row["itl_ms"])
    assert len(row["itl_ms"]) == 40 - st.event_tokens[0]
    assert abs(per_token - truth) / truth < 0.25, (per_token, truth)  # per token: close to the engine's 4 ms
    assert statistics.mean(row["chunk_gap_ms"]) > 3 * truth  # per event: several tokens' worth
    assert row["multi_token_events"] >= 5


def test_sim_one_event_per_token_by_default():
    st, req = _sim_stream(coalesce=False, continuous=False, lag_s=0.0)
    assert len(st.token_times) == 40 and st.usage["completion_tokens"] == 40
