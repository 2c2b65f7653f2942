"""Workload preparation, in the harness process before Locust starts: tokenizer, datasets, shared-prefix pools.

Everything that can fail on bad input fails here (a HarnessError naming the file, line and fix), never inside
the Locust subprocess. The result travels to Locust as files in the run dir (`locust/pool.json`) and config keys.

Prompt lengths are *token-exact* when a tokenizer is available: synthetic prompts are then built only from
words that encode as exactly one token (with their leading space) and the count is verified on samples;
dataset prompts and answers are counted with it. Otherwise lengths are word counts (≈ tokens for common
English words with byte-level BPE). `info["prompt_length_unit"]` records which.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, ScenarioError
from harness.load.workload import VOCAB, make_prompt, sample_length
from harness.paths import asset_dir, input_file_problem, resolve_input
from harness.scenario import Scenario

REPO_ROOT = asset_dir("datasets").parent
MIN_VOCAB = 32  # fewer single-token words than this: the tokenizer is too odd, fall back to words


@dataclass
class Prepared:
    vocab: list[str] | None = None  # single-token words (token-exact synthetic prompts); None: default VOCAB
    pool: list[dict[str, Any]] | None = None  # RequestSource pool items
    info: dict[str, Any] = field(default_factory=dict)  # recorded in run.json (load.workload)
    tokenizer_path: Path | None = None  # counts the tokens of SSE events whose usage does not say
    trace: list[dict[str, Any]] | None = None  # trace rows to send (harness.load.trace), when workload.trace is set
    images: list[dict[str, Any]] | None = None  # workload.images: the distinct images, encoded (harness.load.images)


# ---------- tokenizer ----------


def tokenizer_path(scenario: Scenario) -> Path | None:
    """The tokenizer.json to use, or None. An explicit `workload.tokenizer` that is missing is an error."""
    w, t = scenario.workload, scenario.target
    if w.tokenizer:
        p = Path(w.tokenizer).expanduser()
        f = p / "tokenizer.json" if p.is_dir() else p
        bad = input_file_problem(f)
        if bad is not None:
            what = "no tokenizer.json there" if bad[0].startswith("not found") else f"{f}: {bad[0]}"
            raise HarnessError(
                f"workload.tokenizer: {w.tokenizer}: {what}",
                fix="point it at a tokenizer.json file or a model directory holding one, or remove it"
                if bad[0].startswith("not found")
                else bad[1],
            )
        return f
    if t.engine == "vllm" and t.vllm is not None:
        if t.vllm.model_source == "tiny":
            from harness.model.tiny import default_model_dir

            d = default_model_dir()
        else:
            d = Path(t.vllm.model_source).expanduser()
        f = d / "tokenizer.json"
        return f if f.is_file() else None
    return None


def load_tokenizer(path: Path | None) -> tuple[Callable[[str], int] | None, str]:
    """(count_tokens, note). count_tokens is None when no tokenizer can be used."""
    if path is None:
        return None, "no local tokenizer for the served model: lengths are word counts"
    try:
        from tokenizers import Tokenizer  # lazy: optional dependency
    except ImportError:
        return None, f"`tokenizers` is not installed, so {path} was not used: lengths are word counts"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # a corrupt file: lengths would silently become word counts, so it is bad input
        raise HarnessError(
            f"tokenizer {path}: cannot be loaded ({e.__class__.__name__}: {str(e)[:200]})",
            fix="replace it with the model's own tokenizer.json (Hugging Face `tokenizers` format), "
            "or remove workload.tokenizer to count lengths in words",
        ) from None
    return (lambda text: len(tok.encode(text, add_special_tokens=False).ids)), f"tokenizer {path}"


def single_token_vocab(count: Callable[[str], int], rng_seed: int = 0) -> list[str] | None:
    """Words that are one token both alone and after a space; None if too few or prompts don't add up."""
    words = [w for w in VOCAB if count(w) == 1 and count(" " + w) == 1]
    if len(words) < MIN_VOCAB:
        return None
    rng = random.Random(rng_seed)
    for n in (1, 7, 64, 301):  # verify additivity on a few prompts
        if count(make_prompt(rng, n, words)) != n:
            return None
    return words


# ---------- datasets ----------


def _checked(found: Path, field: str, path: str) -> Path:
    bad = input_file_problem(found)
    if bad is not None:
        raise HarnessError(f"{field}: {path}: {bad[0]}" + ("" if str(found) == path else f" ({found})"), fix=bad[1])
    return found


def resolve_dataset(path: str, relative_to: Path | None = None) -> Path:
    found = resolve_input(path, relative_to=relative_to, asset="datasets")
    if found is not None:
        return _checked(found, "workload.dataset.path", path)
    raise HarnessError(
        f"workload.dataset.path: {path}: file not found",
        fix=f"give an absolute path, one relative to the current directory, or a shipped one "
        f"({', '.join(str(x.relative_to(REPO_ROOT)) for x in sorted((REPO_ROOT / 'datasets').glob('*.jsonl')))})",
    )


_ROLE = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}


def _sharegpt_turns(obj: Any, count: Callable[[str], int], multi_turn: bool) -> list[dict[str, Any]]:
    convs = obj.get("conversations") if isinstance(obj, dict) else None
    if convs is None and isinstance(obj, dict):
        convs = obj.get("messages")
    if not isinstance(convs, list) or not convs:
        raise ValueError('expected {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}')
    msgs = []
    for j, m in enumerate(convs):
        if not isinstance(m, dict):
            raise ValueError(f"conversations[{j}] is not an object")
        role = _ROLE.get(str(m.get("from", m.get("role", ""))).lower())
        text = m.get("value", m.get("content"))
        if role is None or not isinstance(text, str):
            raise ValueError(f"conversations[{j}]: needs from: human|gpt and a string value")
        if role != "system":
            msgs.append((role, text))
    turns = []
    for j, (role, text) in enumerate(msgs):
        if role != "user":
            continue
        answer = msgs[j + 1][1] if j + 1 < len(msgs) and msgs[j + 1][0] == "assistant" else None
        if answer is None:
            continue  # a question without an answer gives no output length
        a_len = max(1, count(answer))
        turns.append(
            {"user": text, "prompt_len": count(text), "assistant": answer, "assistant_len": a_len, "max_tokens": a_len}
        )
        if not multi_turn:
            break
    if not turns:
        raise ValueError("no human turn followed by a gpt answer")
    return turns


def _prompt_turns(obj: Any, count: Callable[[str], int], w: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
        raise ValueError('expected {"prompt": "...", "output_tokens": N}')
    out = obj.get("output_tokens", obj.get("max_tokens"))
    if out is None:
        out = sample_length(rng, w["output_tokens"])
    if not isinstance(out, int) or isinstance(out, bool) or out < 1:
        raise ValueError(f"output_tokens must be a positive integer, got {out!r}")
    return [{"user": obj["prompt"], "prompt_len": count(obj["prompt"]), "assistant": None, "max_tokens": out}]


def load_dataset(scenario: Scenario, count: Callable[[str], int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ds = scenario.workload.dataset
    assert ds is not None
    path = resolve_dataset(ds.path)
    w = scenario.workload.model_dump(mode="json")
    rng = random.Random(f"harness-dataset:{scenario.workload.seed}")
    pool: list[dict[str, Any]] = []
    problems: list[str] = []
    with open(path, "rb") as f:  # bytes: a line that is not UTF-8 is one bad line, not a crash
        for i, raw in enumerate(f, 1):
            if ds.max_items is not None and len(pool) >= ds.max_items:
                break
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
                turns = (
                    _sharegpt_turns(obj, count, ds.multi_turn)
                    if ds.format == "sharegpt"
                    else _prompt_turns(obj, count, w, rng)
                )
            except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
                why = "JSON nested too deeply" if isinstance(e, RecursionError) else str(e)
                problems.append(f"{path}:{i}: {why}")
                if len(problems) >= 10:
                    break
                continue
            pool.append({"turns": turns})
    if problems:
        raise HarnessError(
            f"{path}: invalid {ds.format} dataset",
            problems=problems,
            fix=f"fix those lines (format {ds.format}: see datasets/README.md)",
        )
    if not pool:
        raise HarnessError(f"{path}: the dataset has no usable lines", fix="add at least one line")
    turns = [t for it in pool for t in it["turns"]]
    info = {
        "dataset": str(path),
        "format": ds.format,
        "items": len(pool),
        "turns": len(turns),
        "multi_turn": ds.multi_turn,
        "mean_prompt_len": round(sum(t["prompt_len"] for t in turns) / len(turns), 1),
        "mean_output_tokens": round(sum(t["max_tokens"] for t in turns) / len(turns), 1),
    }
    return pool, info


# ---------- trace ----------


def resolve_trace(path: str) -> Path:
    found = resolve_input(path, asset="datasets")
    if found is not None:
        return _checked(found, "workload.trace.path", path)
    shipped = sorted((REPO_ROOT / "datasets").glob("trace-*"))
    raise HarnessError(
        f"workload.trace.path: {path}: file not found",
        fix=f"give an absolute path, one relative to the current directory, or a shipped one "
        f"({', '.join(str(x.relative_to(REPO_ROOT)) for x in shipped)})",
    )


def trace_rows(scenario: Scenario) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The trace's rows to send (time order, send offsets in s) and what the record says about them."""
    from harness.load.trace import load_trace

    tr = scenario.workload.trace
    assert tr is not None
    return load_trace(
        resolve_trace(tr.path),
        tr.format,
        speedup=tr.speedup,
        start_s=tr.start_s,
        duration_s=scenario.load.duration_s,
        prefix_tokens=tr.prefix_tokens,
        block_tokens=tr.block_tokens,
    )


# ---------- shared prefix ----------


def shared_prefix_pool(scenario: Scenario, vocab: list[str] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sp = scenario.workload.shared_prefix
    assert sp is not None
    w = scenario.workload.model_dump(mode="json")
    v = vocab or list(VOCAB)
    rng = random.Random(f"harness-prefix:{scenario.workload.seed}")
    pool = []
    for i in range(sp.num_prefixes):
        prefix = make_prompt(rng, sp.prefix_tokens, v)
        for _ in range(sp.suffixes_per_prefix):
            n = sample_length(rng, w["prompt_tokens"])
            pool.append(
                {
                    "prefix": i,
                    "turns": [
                        {
                            "user": f"{prefix} {make_prompt(rng, n, v)}",
                            "prompt_len": sp.prefix_tokens + n,
                            "assistant": None,
                            "max_tokens": sample_length(rng, w["output_tokens"]),
                        }
                    ],
                }
            )
    info = {
        "num_prefixes": sp.num_prefixes,
        "prefix_tokens": sp.prefix_tokens,
        "suffixes_per_prefix": sp.suffixes_per_prefix,
        "prompts": len(pool),
        "prefix_cache": "hit rate from the server's prefix_cache_hits/queries counters (engines without a "
        "prefix cache, such as the sim engine, export none: no data)",
    }
    return pool, info


# ---------- entry point ----------


def prepare_workload(scenario: Scenario) -> Prepared:
    w = scenario.workload
    tok_path = tokenizer_path(scenario)
    count, note = load_tokenizer(tok_path)
    out = Prepared(tokenizer_path=tok_path if count is not None else None)
    unit = "words"
    if count is not None:
        vocab = single_token_vocab(count, w.seed)
        if vocab is None and w.dataset is None:
            note += " (too few single-token words for exact synthetic prompts: lengths are word counts)"
        else:
            unit = "tokens"
            out.vocab = vocab
    counter = count if unit == "tokens" and count is not None else (lambda s: len(s.split()))
    kind = "synthetic"
    extra: dict[str, Any] = {}
    if w.dataset is not None:
        kind = "dataset"
        out.pool, extra = load_dataset(scenario, counter)
    elif w.shared_prefix is not None:
        kind = "shared_prefix"
        out.pool, extra = shared_prefix_pool(scenario, out.vocab)
    elif w.trace is not None:
        kind = "trace"
        out.trace, extra = trace_rows(scenario)
    elif w.session_turns > 1:
        kind = "multi_turn"
        extra = {"session_turns": w.session_turns}
    out.info = {"kind": kind, "prompt_length_unit": unit, "tokenizer": note, **extra}
    if w.images is not None:
        from harness.load.images import build_pool

        out.images, out.info["images"] = build_pool(w.images, w.seed)
    return out


def workload_server_stats(info: dict[str, Any], server: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Server stats the workload calls for: the prefix-cache hit rate (hits / queries over the run), and a note
    when a shared-prefix workload gets no prefix-cache data (engines without one, e.g. the sim engine)."""
    hits, queries = (server.get(k, {}).get("total") for k in ("prefix_cache_hits", "prefix_cache_queries"))
    out = dict(server)
    notes: list[str] = []
    if hits is not None and queries and "prefix_cache_hit_rate" not in server:
        out["prefix_cache_hit_rate"] = {"value": hits / queries, "hits": hits, "queries": queries}
    elif info.get("kind") == "shared_prefix" and "prefix_cache_hit_rate" not in server:
        notes.append(
            "prefix-cache hit rate: no data (the engine exports no prefix-cache counters; the sim engine "
            "does not model a prefix cache)"
        )
    return out, notes


def check_trace_models(sc: Scenario, rows: list[dict[str, Any]], source: str) -> None:
    """A trace's `model` column decides where requests go (unless workload.models is set): each must be served, and a
    `@model:` SLO scope must name a model some request goes to."""
    trace_models = sorted({r["model"] for r in rows if "model" in r})
    served = sc.target.served_models()
    unserved = [m for m in trace_models if m not in served]
    if unserved and not sc.workload.models and sc.target.engine != "external":
        raise ScenarioError(
            f"{source}: workload.trace: the trace sends to model(s) {', '.join(unserved)}, which the target "
            f"does not serve (served: {', '.join(served)})",
            fix="serve them (target.models), or set workload.models to choose the models by weight instead",
        )
    if sc.target.engine == "external" and not sc.workload.models:
        bad = [s for s in sc.slos if "@model:" in s and s.split("@model:", 1)[1].strip() not in (served + trace_models)]
        if bad:
            raise ScenarioError(
                f"{source}: slos: {bad[0]!r}: no request of the trace goes to that model "
                f"(the trace's models: {', '.join(trace_models) or 'none'})",
                fix="name one of the trace's models in the @model: scope",
            )


def api_key_problem(sc: Scenario, source: str = "<scenario>") -> ScenarioError | None:
    """The error for a `target.api_key_env` that is not set in this environment, or None."""
    if sc.target.api_key_env and not os.environ.get(sc.target.api_key_env):
        return ScenarioError(
            f"{source}: target.api_key_env: the environment variable {sc.target.api_key_env} is not set",
            fix=f"export {sc.target.api_key_env}=<key> (sent as a Bearer token, never recorded), or remove api_key_env",
        )
    return None


def check_inputs(sc: Scenario, source: str = "<scenario>", *, env: bool = True) -> None:
    """Fail before anything starts when a local file the scenario names is missing, unreadable or malformed:
    datasets and traces are parsed in full, the tokenizer is loaded. With `env`, an unset `api_key_env` fails too
    (`scenarios validate` reports it as a warning instead: a merge check does not hold the run's secrets)."""
    from harness.load.correctness import check_correctness_inputs

    check_correctness_inputs(sc, source)  # workload.correctness: prompts file, baseline run
    ds = sc.workload.dataset
    if ds is not None:
        try:
            load_dataset(sc, lambda text: len(text.split()))  # every line parsed, as the run will
        except HarnessError as e:
            problems = [f"{source}: workload.dataset: {p}" for p in e.problems]
            raise ScenarioError(f"{source}: {e.message}", problems=problems, fix=e.fix) from None
        except OSError as e:
            raise ScenarioError(
                f"{source}: workload.dataset.path: {ds.path}: cannot read ({e.strerror or e})",
                fix="check the file's permissions",
            ) from None
    if sc.workload.trace is not None:
        try:
            rows, _ = trace_rows(sc)  # parses and schedules the whole trace: bad rows fail here, before anything starts
        except HarnessError as e:
            where = "" if e.message.startswith("workload.") else "workload.trace: "
            raise ScenarioError(
                f"{source}: {where}{e.message}",
                problems=[f"{source}: workload.trace: {p}" for p in e.problems],
                fix=e.fix,
            ) from None
        except OSError as e:
            raise ScenarioError(
                f"{source}: workload.trace.path: {sc.workload.trace.path}: cannot read ({e.strerror or e})",
                fix="check the file's permissions",
            ) from None
        check_trace_models(sc, rows, source)
    im = sc.workload.images
    if im is not None and (im.folder is not None or im.dataset is not None):
        from harness.load.images import build_pool

        try:
            build_pool(im, sc.workload.seed)  # opens every file: a folder without images or a non-image fails here
        except HarnessError as e:
            raise ScenarioError(f"{source}: {e.message}", fix=e.fix) from None
    try:
        load_tokenizer(tokenizer_path(sc))  # a corrupt tokenizer is bad input, not a silent switch to word counts
    except HarnessError as e:
        where = "" if e.message.startswith("workload.") else "workload.tokenizer: " if sc.workload.tokenizer else ""
        raise ScenarioError(f"{source}: {where}{e.message}", fix=e.fix) from None
    if env and (unset := api_key_problem(sc, source)) is not None:
        raise unset
    v = sc.target.vllm
    if v is not None and v.model_source.startswith((".", "/", "~")):
        p = Path(v.model_source).expanduser()
        if not p.is_dir():
            raise ScenarioError(
                f"{source}: target.vllm.model_source: {p}: model directory not found",
                fix="give a folder holding config.json and the weights, a Hugging Face id, or `tiny`",
            )
        if not os.access(p, os.R_OK | os.X_OK):
            raise ScenarioError(
                f"{source}: target.vllm.model_source: {p}: directory not readable", fix="check its permissions"
            )
