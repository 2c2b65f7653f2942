"""The tiny local Llama: layout vLLM loads, deterministic, idempotent, no network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.model import tiny


def test_default_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "x"))
    assert tiny.default_model_dir() == tmp_path / "x"
    monkeypatch.delenv("HARNESS_MODEL_DIR")
    assert tiny.default_model_dir() == Path.home() / ".cache" / "harness" / "models" / "tiny-llama"


def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        tiny.build_tiny_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _need_build_deps():
    for m in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(m, reason="building the tiny model needs the vllm-cpu extra (torch, transformers)")


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    _need_build_deps()
    return tiny.build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0)


def test_layout_and_architecture(built):
    names = {p.name for p in built.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", tiny.MARKER} <= names
    cfg = json.loads((built / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["hidden_size"] // cfg["num_attention_heads"] >= 32  # vLLM CPU attention: head_dim 16 dies
    assert cfg["num_key_value_heads"] == 2 and cfg["max_position_embeddings"] == 2048
    assert tiny.is_complete(built, seed=0) and not tiny.is_complete(built, seed=1)


def test_tokenizer_and_chat_template(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (tiny.BOS, tiny.EOS, tiny.PAD)
    cfg = json.loads((built / "config.json").read_text())
    assert len(tok) == cfg["vocab_size"]
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hello there"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<s><|user|>\nHello there<|end|>\n<|assistant|>\n"
    s = "The quick brown fox, 42 tokens: ünïcode ok."
    assert tok.decode(tok(s)["input_ids"]) == s  # byte-level: lossless round trip


def test_deterministic_and_idempotent(built, tmp_path):
    again = tiny.build_tiny_model(tmp_path / "again", seed=0)
    assert _digest(again) == _digest(built)
    before = {p.name: p.stat().st_mtime_ns for p in built.iterdir()}
    assert tiny.build_tiny_model(built, seed=0) == built  # complete: returned untouched
    assert {p.name: p.stat().st_mtime_ns for p in built.iterdir()} == before


def test_other_seed_rebuilds_in_place(tmp_path):
    _need_build_deps()
    d = tiny.build_tiny_model(tmp_path / "m", seed=0)
    w0 = (d / "model.safetensors").read_bytes()
    tiny.build_tiny_model(d, seed=1)
    assert tiny.is_complete(d, seed=1) and (d / "model.safetensors").read_bytes() != w0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no build leftovers


def test_cli_model_tiny_calls_builder_and_maps_errors(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import harness.model.tiny as tiny
    from harness.cli import app

    calls = []
    monkeypatch.setattr(tiny, "build_tiny_model", lambda out, seed=0: calls.append((out, seed)) or out)
    r = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "m"), "--seed", "3"])
    assert r.exit_code == 0 and calls == [(tmp_path / "m", 3)] and str(tmp_path / "m") in r.stdout

    def refuse(out, seed=0):
        raise FileExistsError(f"{out} is not empty and holds no harness tiny model")

    monkeypatch.setattr(tiny, "build_tiny_model", refuse)
    r = CliRunner().invoke(app, ["model", "tiny", str(tmp_path)])
    assert r.exit_code == 2 and "holds no harness tiny model" in r.output and "Traceback" not in r.output


def test_textless_tokens_never_win_greedy_decoding(built):
    # a random model loops on one token; if it has no text of its own the whole stream is empty (seen: ~8%)
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    ids = tiny._textless_token_ids(tok)
    assert set(tok.all_special_ids) <= set(ids) and len(ids) < len(tok) // 4
    w = load_file(str(built / "model.safetensors"))["lm_head.weight"]
    assert float(w[ids].abs().max()) == 0.0 and float(w.abs().sum()) > 0
