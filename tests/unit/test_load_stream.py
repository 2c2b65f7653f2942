import json

import pytest

from harness.load.stream import StreamState, build_sample


def _chunk(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _chat(content, **extra):
    return _chunk({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": content}], **extra})


def feed_all(lines):
    st = StreamState()
    for i, ln in enumerate(lines):
        st.feed(ln, float(i))
    return st


def test_chat_stream_counts_only_content_chunks_and_reads_usage():
    st = feed_all(
        [
            _chat({"role": "assistant", "content": ""}),  # t=0: role chunk, not a token
            b"\n",
            _chat({"content": "Hello"}),  # t=2
            b": keep-alive\n",
            _chat({"content": ' \\"text\\":\\"x'}),  # t=4: escaped quotes inside the text
            _chat({"content": None}),  # not a token
            _chunk(
                {"id": "x", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}
            ),
            b"data: [DONE]\n",
        ]
    )
    assert st.token_times == [2.0, 4.0]
    assert st.usage == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    assert st.done and st.finish_error() is None


def test_spaced_json_and_completions_text():
    st = feed_all(
        [
            b'data: {"choices": [{"text": "a", "index": 0}], "usage": null}\n',
            b'data: {"choices": [{"text": "", "index": 0}], "usage": null}\n',
            b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n',
            b"data:[DONE]\n",
        ]
    )
    assert st.token_times == [0.0]
    assert st.usage["completion_tokens"] == 1 and st.finish_error() is None


def test_reasoning_content_is_a_token_but_not_a_content_token():
    st = feed_all([_chat({"reasoning_content": "hmm"}), _chat({"content": "ok"}), b"data: [DONE]\n"])
    assert st.token_times == [0.0, 1.0] and st.first_content == 1.0


@pytest.mark.parametrize(
    "lines, err",
    [
        ([_chat({"content": "a"})], "bad_stream"),  # no [DONE]: truncated
        ([b"data: [DONE]\n"], "empty_stream"),
        ([_chat({"content": "a"}), b'data: {"object":"error","message":"boom"}\n', b"data: [DONE]\n"], "stream_error"),
        ([b'data: {"error":{"message":"x"}}\n'], "stream_error"),
        ([b"data: {not json\n", b"data: [DONE]\n"], "bad_stream"),
    ],
)
def test_stream_errors(lines, err):
    assert feed_all(lines).finish_error() == err


def test_build_sample_from_timestamps():
    row = build_sample(
        t_start=1000.0,
        p_start=10.0,
        p_end=10.5,
        token_times=[10.1, 10.2, 10.25, 10.45],
        usage={"prompt_tokens": 7, "completion_tokens": 4},
        status=200,
        error=None,
        prompt_words=6,
        max_tokens=4,
        worker=42,
    )
    assert row["ttft_ms"] == pytest.approx(100.0)
    assert row["e2e_ms"] == pytest.approx(500.0)
    assert row["itl_ms"] == pytest.approx([100.0, 50.0, 200.0])
    assert (row["prompt_tokens"], row["output_tokens"], row["usage_reported"]) == (7, 4, True)
    assert row["t_start_s"] == 1000.0 and row["worker"] == 42


def test_build_sample_without_usage_counts_chunks_and_handles_no_tokens():
    row = build_sample(
        t_start=0.0,
        p_start=0.0,
        p_end=0.3,
        token_times=[0.1, 0.2],
        usage=None,
        status=200,
        error=None,
        prompt_words=5,
        max_tokens=2,
        worker=1,
    )
    assert (row["output_tokens"], row["prompt_tokens"], row["usage_reported"]) == (2, None, False)
    err = build_sample(
        t_start=0.0,
        p_start=0.0,
        p_end=1.0,
        token_times=[],
        usage=None,
        status=0,
        error="connection",
        prompt_words=5,
        max_tokens=2,
        worker=1,
    )
    assert err["ttft_ms"] is None and err["itl_ms"] == [] and err["output_tokens"] == 0
