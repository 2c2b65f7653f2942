import json
import random

import pytest

from harness.load.workload import VOCAB, build_body, endpoint_path, make_prompt, sample_length, user_rng


def test_vocab_words_are_unique_and_simple():
    assert len(VOCAB) == len(set(VOCAB)) > 200
    assert all(w.isalpha() and w.islower() for w in VOCAB)


def test_same_seed_and_user_replay_the_same_requests():
    def seq(seed, w, u):
        rng = user_rng(seed, w, u)
        return [make_prompt(rng, sample_length(rng, {"mean": 50, "stddev": 10})) for _ in range(5)]

    assert seq(1, 0, 3) == seq(1, 0, 3)
    assert seq(1, 0, 3) != seq(1, 0, 4)
    assert seq(1, 0, 3) != seq(1, 1, 3)
    assert seq(1, 0, 3) != seq(2, 0, 3)


@pytest.mark.parametrize("n", [1, 7, 128, 2000])
def test_prompt_has_the_requested_word_count(n):
    assert len(make_prompt(random.Random(0), n).split()) == n


def test_sample_length_respects_mean_and_bounds():
    rng = random.Random(0)
    assert {sample_length(rng, {"mean": 64}) for _ in range(20)} == {64}
    xs = [sample_length(rng, {"mean": 100, "stddev": 30, "min": 50, "max": 140}) for _ in range(5000)]
    assert min(xs) == 50 and max(xs) == 140
    assert 95 < sum(xs) / len(xs) < 105
    assert min(sample_length(rng, {"mean": 2, "stddev": 50, "min": 1, "max": None}) for _ in range(200)) == 1


def test_endpoint_path_accepts_base_with_or_without_v1():
    assert endpoint_path("/", "chat") == "/v1/chat/completions"
    assert endpoint_path("", "completions") == "/v1/completions"
    assert endpoint_path("/v1/", "chat") == "/v1/chat/completions"
    assert endpoint_path("/llm", "chat") == "/llm/v1/chat/completions"


def test_bodies_carry_the_openai_fields():
    chat = json.loads(
        build_body(
            api="chat", model="m", prompt="hi there", max_tokens=9, stream=True, ignore_eos=True, temperature=0.0
        )
    )
    assert chat == {
        "model": "m",
        "max_tokens": 9,
        "temperature": 0.0,
        "stream": True,
        "messages": [{"role": "user", "content": "hi there"}],
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    comp = json.loads(
        build_body(
            api="completions", model="m", prompt="x", max_tokens=1, stream=False, ignore_eos=False, temperature=0.5
        )
    )
    assert comp["prompt"] == "x" and "stream_options" not in comp and "ignore_eos" not in comp
