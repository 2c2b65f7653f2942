"""Issue 26: `harness scenarios validate` checks the input files a scenario names through the same code `run` uses
(harness/run/ready.py → harness/load/prepare.py:check_inputs): datasets parsed in full, tokenizers loaded, paths
that are folders, FIFOs or symlink loops refused with a fix (a FIFO never blocks), `~` expanded; `--no-files`
skips the files; an unset `api_key_env` is a warning line."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from harness.cli import app
from harness.errors import HarnessError

SC = """name: v
target: {engine: sim, model: m}
workload: WORKLOAD
load: {stages: [{duration_s: 5, users: 1}]}
slos: ["ttft.p95 <= 1s"]
"""
TURN = [{"from": "human", "value": "hello there"}, {"from": "gpt", "value": "hi"}]


class Blocked(BaseException):  # not an OSError: no handler in the code under test may turn it into a message
    pass


@pytest.fixture(autouse=True)
def no_hang():
    """A check that opened a FIFO would block forever: fail the test instead."""

    def boom(*_):
        raise Blocked("blocked reading a FIFO")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _out(res) -> str:
    err = res.stderr if res.stderr_bytes is not None else ""
    return res.output if err in res.output else res.output + err


def _validate(runner, path: Path, *extra: str, code: int = 2, words: tuple[str, ...] = ()) -> str:
    res = runner.invoke(app, ["scenarios", "validate", str(path), *extra])
    out = _out(res)
    assert res.exit_code == code, (res.exit_code, out)
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
    for w in words:
        assert w in out, (w, out)
    return out


def _scenario(tmp_path: Path, workload: str) -> Path:
    p = tmp_path / "s.yaml"
    text = SC.replace("WORKLOAD", workload)
    p.write_text(text.replace(", users: 1", "") if "trace:" in workload else text)  # a trace sets the load
    return p


def _dataset(tmp_path: Path, text: str | bytes, fmt: str = "sharegpt") -> Path:
    d = tmp_path / "d.jsonl"
    d.write_bytes(text if isinstance(text, bytes) else text.encode())
    return _scenario(tmp_path, f"{{dataset: {{path: {d}, format: {fmt}}}, output_tokens: {{mean: 8}}}}")


GOOD_LINE = json.dumps({"conversations": TURN}) + "\n"


def test_a_good_dataset_passes(runner, tmp_path):
    _validate(runner, _dataset(tmp_path, GOOD_LINE * 3), code=0, words=("ok",))


@pytest.mark.parametrize(
    "text,words",
    [
        ("", ("no usable lines",)),
        (GOOD_LINE + "not json\n", ("d.jsonl:2", "workload.dataset")),
        (json.dumps({"prompt": "hi", "output_tokens": 4}) + "\n", ("d.jsonl:1", "conversations")),  # other format
        (GOOD_LINE.encode() + b'{"x": "\xff\xfe"}\n', ("d.jsonl:2", "utf-8")),
        (GOOD_LINE + '{"a":' * 100_000 + "\n", ("d.jsonl:2", "nested too deeply")),
    ],
    ids=["empty", "not json on line 2", "another format", "not utf-8", "nested too deeply"],
)
def test_a_dataset_is_parsed_in_full(runner, tmp_path, text, words):
    _validate(runner, _dataset(tmp_path, text), words=words)


def test_no_files_skips_the_input_files(runner, tmp_path):
    p = _scenario(tmp_path, f"{{dataset: {{path: {tmp_path}/gone.jsonl, format: sharegpt}}}}")
    _validate(runner, p, words=("gone.jsonl", "not found"))
    _validate(runner, p, "--no-files", code=0, words=("ok",))


def test_a_trace_is_checked_by_validate(runner, tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": "soon"}\n')
    _validate(runner, _scenario(tmp_path, f"{{trace: {{path: {t}, format: jsonl}}}}"), words=("workload.trace",))


def test_a_corrupt_tokenizer_is_exit_2_not_word_counts(runner, tmp_path):
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"model": "half a file')
    p = _scenario(tmp_path, f"{{tokenizer: {tok}}}")
    _validate(runner, p, words=("workload.tokenizer", "cannot be loaded", "fix:"))
    res = runner.invoke(app, ["run", str(p), "--results-dir", str(tmp_path / "res")])  # the same check, in `run`
    assert res.exit_code == 2 and "cannot be loaded" in _out(res) and not (tmp_path / "res").exists(), _out(res)

    from harness.load.prepare import load_tokenizer

    with pytest.raises(HarnessError, match="cannot be loaded"):
        load_tokenizer(tok)


def test_a_good_tokenizer_passes(runner, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
    tok.save(str(tmp_path / "tokenizer.json"))
    _validate(runner, _scenario(tmp_path, f"{{tokenizer: {tmp_path}}}"), code=0)


def test_unset_api_key_env_is_a_warning_line(runner, tmp_path, monkeypatch):
    p = tmp_path / "e.yaml"
    p.write_text(
        SC.replace(
            "engine: sim, model: m", "engine: external, model: m, url: 'http://127.0.0.1:9', api_key_env: K26"
        ).replace("workload: WORKLOAD\n", "")
    )
    monkeypatch.delenv("K26", raising=False)
    out = _validate(runner, p, code=0, words=("warning:", "K26 is not set", "ok"))
    assert out.count("warning:") == 1
    monkeypatch.setenv("K26", "secret")
    assert "warning" not in _validate(runner, p, code=0)


def _special(tmp_path: Path, kind: str) -> Path:
    f = tmp_path / f"special-{kind}.jsonl"
    if kind == "fifo":
        os.mkfifo(f)
    elif kind == "dir":
        f.mkdir()
    elif kind == "loop":
        f.symlink_to(f.name)
    elif kind == "device":
        return Path("/dev/null")
    return f


SPECIAL = {"fifo": "FIFO", "dir": "is a folder", "loop": "symlink loop", "device": "character device"}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
@pytest.mark.parametrize("field", ["dataset", "trace", "tokenizer"])
def test_special_input_files_are_refused_with_a_fix(runner, tmp_path, kind, field):
    f = _special(tmp_path, kind)
    words = (f"workload.{field}", SPECIAL[kind], "fix:")
    if field == "tokenizer" and kind == "dir":  # a tokenizer may be a model folder: this one lacks tokenizer.json
        words = ("workload.tokenizer", "tokenizer.json", "fix:")
    workload = {
        "dataset": f"{{dataset: {{path: {f}, format: sharegpt}}}}",
        "trace": f"{{trace: {{path: {f}, format: jsonl}}}}",
        "tokenizer": f"{{tokenizer: {f}}}",
    }[field]
    _validate(runner, _scenario(tmp_path, workload), words=words)


@pytest.mark.parametrize("kind", ["fifo", "loop", "device"])
def test_a_special_scenario_path_is_refused_without_blocking(runner, tmp_path, kind):
    f = _special(tmp_path, kind)
    _validate(runner, f, words=(SPECIAL[kind], "fix:"))


def test_tilde_is_expanded_in_scenario_and_input_paths(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "d.jsonl").write_text(GOOD_LINE)
    (tmp_path / "s.yaml").write_text(
        SC.replace("WORKLOAD", "{dataset: {path: ~/d.jsonl, format: sharegpt}, output_tokens: {mean: 8}}")
    )
    _validate(runner, Path("~/s.yaml"), code=0, words=("ok",))
    (tmp_path / "d.jsonl").unlink()
    _validate(runner, Path("~/s.yaml"), words=("~/d.jsonl", "not found"))


def test_tilde_in_the_middle_says_it_is_not_expanded():
    from harness.paths import input_file_problem

    bad = input_file_problem("data/~/d.jsonl")
    assert bad is not None and "only at the start" in bad[0]
