import json
import random

import pytest

from harness.errors import HarnessError, ScenarioError
from harness.load.prepare import REPO_ROOT, prepare_workload, single_token_vocab, workload_server_stats
from harness.load.workload import RequestSource, build_body
from harness.scenario import parse_scenario


def _sc(workload=None, load=None, target=None):
    return parse_scenario(
        {
            "name": "t",
            "target": target or {"engine": "sim", "model": "m"},
            "workload": workload or {},
            "load": load or {"stages": [{"duration_s": 5, "users": 1}]},
        }
    )


def test_shipped_datasets_load():
    p = prepare_workload(
        _sc({"dataset": {"path": "datasets/sharegpt-mini.jsonl", "format": "sharegpt", "multi_turn": True}})
    )
    assert p.info["kind"] == "dataset" and p.info["items"] == 16 and p.info["turns"] > 16
    assert p.info["prompt_length_unit"] == "words"
    q = prepare_workload(
        _sc({"dataset": {"path": str(REPO_ROOT / "datasets/prompts-mini.jsonl"), "format": "prompts"}})
    )
    assert q.info["items"] == 20 and q.pool[0]["turns"][0]["max_tokens"] == 48


def test_bad_dataset_lines_are_reported_with_line_numbers(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "ok", "output_tokens": 3}\nnot json\n{"prompt": "x", "output_tokens": 0}\n')
    with pytest.raises(HarnessError) as ei:
        prepare_workload(_sc({"dataset": {"path": str(f), "format": "prompts"}}))
    assert any(":2:" in p for p in ei.value.problems) and any(":3:" in p and "positive" in p for p in ei.value.problems)
    with pytest.raises(HarnessError, match="file not found"):
        prepare_workload(_sc({"dataset": {"path": "nope.jsonl", "format": "prompts"}}))


def test_multi_turn_session_replays_history():
    p = prepare_workload(
        _sc({"dataset": {"path": "datasets/sharegpt-mini.jsonl", "format": "sharegpt", "multi_turn": True}})
    )
    item = next(i for i in p.pool if len(i["turns"]) == 3)
    src = RequestSource({"prompt_tokens": {"mean": 4}, "output_tokens": {"mean": 4}}, None, [item])
    s = src.session(random.Random(0))
    lens = []
    for k in range(3):
        msgs, max_tokens, plen, idx = s.next_turn()
        assert idx == k and len(msgs) == 2 * k + 1 and msgs[-1]["role"] == "user"
        if k:
            assert msgs[1]["content"] == item["turns"][0]["assistant"]  # the dataset's answer is the history
        lens.append(plen)
        s.reply(5)
    assert s.next_turn() is None and lens == sorted(lens)


def test_synthetic_multi_turn_and_completions_body():
    src = RequestSource({"prompt_tokens": {"mean": 10}, "output_tokens": {"mean": 4}, "session_turns": 2})
    s = src.session(random.Random(1))
    m1, _, l1, _ = s.next_turn()
    s.reply(7)
    m2, _, l2, i2 = s.next_turn()
    assert len(m2) == 3 and l2 == 10 + 7 + 10 and i2 == 1 and s.next_turn() is None
    body = json.loads(
        build_body(api="completions", model="m", messages=m2, max_tokens=4, stream=True, ignore_eos=True, temperature=0)
    )
    assert body["prompt"].count("\n") == 2


def test_shared_prefix_pool():
    p = prepare_workload(
        _sc(
            {
                "shared_prefix": {"num_prefixes": 3, "prefix_tokens": 50, "suffixes_per_prefix": 4},
                "prompt_tokens": {"mean": 10},
            }
        )
    )
    assert len(p.pool) == 12 and p.info["kind"] == "shared_prefix"
    prefixes = {" ".join(i["turns"][0]["user"].split()[:50]) for i in p.pool}
    assert len(prefixes) == 3 and all(i["turns"][0]["prompt_len"] == 60 for i in p.pool)


def test_token_exact_vocab_with_a_fake_tokenizer():
    count = lambda s: len(s.split())  # a tokenizer where every word is one token: prompts are exact
    assert single_token_vocab(count) is not None
    assert single_token_vocab(lambda s: 2 * len(s.split())) is None  # nothing is one token: fall back to words


def test_token_exact_with_the_tiny_model_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from harness.load.workload import VOCAB

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        [" ".join(VOCAB)] * 50 + list(VOCAB) * 5,
        trainers.BpeTrainer(vocab_size=1200, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    p = prepare_workload(_sc({"tokenizer": str(tmp_path)}))
    assert p.info["prompt_length_unit"] == "tokens" and p.vocab
    from harness.load.workload import make_prompt

    prompt = make_prompt(random.Random(5), 123, p.vocab)
    assert len(tok.encode(prompt, add_special_tokens=False).ids) == 123
    with pytest.raises(HarnessError, match="no tokenizer.json"):
        prepare_workload(_sc({"tokenizer": str(tmp_path / "missing")}))


def test_prefix_cache_hit_rate_or_no_data():
    s, notes = workload_server_stats({"kind": "shared_prefix"}, {})
    assert "prefix_cache_hit_rate" not in s and "no data" in notes[0]
    s, notes = workload_server_stats(
        {"kind": "shared_prefix"}, {"prefix_cache_hits": {"total": 30.0}, "prefix_cache_queries": {"total": 40.0}}
    )
    assert s["prefix_cache_hit_rate"]["value"] == 0.75 and not notes


def test_scenario_open_loop_validation():
    sc = _sc(
        load={
            "arrival": {"process": "gamma", "burstiness": 0.5, "rate_rps": 3},
            "cooldown_s": 1,
            "stages": [{"duration_s": 5}, {"duration_s": 5, "rate_rps": 1, "ramp_to_rps": 6}],
        }
    )
    assert [s.rate_rps for s in sc.load.stages] == [3, 1] and sc.load.open_loop
    for load, msg in [
        ({"stages": [{"duration_s": 5}]}, "closed loop needs `users`"),
        ({"arrival": {}, "stages": [{"duration_s": 5}]}, "needs rate_rps"),
        ({"arrival": {"rate_rps": 1}, "stages": [{"duration_s": 5, "users": 3}]}, "uses rate_rps, not users"),
        ({"cooldown_s": 3, "warmup_s": 3, "stages": [{"duration_s": 5, "users": 1}]}, "warmup_s + cooldown_s"),
    ]:
        with pytest.raises(ScenarioError) as ei:
            _sc(load=load)
        assert msg in ei.value.render(), ei.value.render()
    with pytest.raises(ScenarioError, match="invalid"):
        _sc(
            {
                "dataset": {"path": "x", "format": "prompts"},
                "shared_prefix": {"num_prefixes": 1, "prefix_tokens": 1, "suffixes_per_prefix": 1},
            }
        )
