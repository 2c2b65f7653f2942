"""Output correctness probes (scenario `workload.correctness`): fixed prompts sent with greedy decoding before the
load; each output, its digest and token count go in run.json `correctness`. A build that answers differently from
its baseline is caught by `outputs.changed == 0` (against `workload.correctness.baseline`) and `harness compare`."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.errors import HarnessError, ScenarioError
from harness.paths import asset_dir, resolve_input
from harness.record.schema import Correctness, Probe
from harness.scenario import Correctness as CorrectnessSpec
from harness.scenario import Scenario

DEFAULT_FILE = "correctness-default.txt"


def read_prompts_file(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def load_prompts(c: CorrectnessSpec, source: str = "<scenario>") -> tuple[list[str], str]:
    """(prompts, where they came from); a missing or empty prompts file is bad input (exit 2)."""
    if c.prompts is not None:
        return list(c.prompts), "inline"
    if c.prompts_file is None:
        path = asset_dir("datasets") / DEFAULT_FILE
        return read_prompts_file(path), f"default ({DEFAULT_FILE})"
    found = resolve_input(c.prompts_file, asset="datasets")
    if found is None or not found.is_file():
        raise ScenarioError(
            f"{source}: workload.correctness.prompts_file: {c.prompts_file}: file not found",
            fix="give an existing text file (one prompt per line), list `prompts:` inline, or drop both for the "
            f"shipped default set ({DEFAULT_FILE})",
        )
    try:
        prompts = read_prompts_file(found)
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(
            f"{source}: workload.correctness.prompts_file: {found}: cannot read ({e})",
            fix="a UTF-8 text file, one prompt per line",
        ) from None
    if not prompts:
        raise ScenarioError(
            f"{source}: workload.correctness.prompts_file: {found}: no prompts (empty, or only blank/# lines)",
            fix="write one prompt per line",
        )
    return prompts, str(found)


def baseline_probes(path: str, source: str = "<scenario>") -> Correctness:
    """The recorded probes of the baseline run (a folder or its run.json); exit 2 when it has none."""
    from harness.record import read_record

    p = Path(path)
    folder = p.parent if p.name == "run.json" else p
    if not (folder / "run.json").is_file():
        raise ScenarioError(
            f"{source}: workload.correctness.baseline: {path}: no run.json there",
            fix="give the folder of an earlier `harness run` of this scenario with workload.correctness",
        )
    try:
        run, _ = read_record(folder)
    except (ValueError, OSError) as e:
        raise ScenarioError(f"{source}: workload.correctness.baseline: {path}: cannot read the record: {e}") from None
    if run.correctness is None or not run.correctness.probes:
        raise ScenarioError(
            f"{source}: workload.correctness.baseline: {path}: that run recorded no correctness probes",
            fix="use a baseline run made with workload.correctness (same prompts)",
        )
    return run.correctness


def check_correctness_inputs(sc: Scenario, source: str = "<scenario>") -> None:
    c = sc.workload.correctness
    if c is None:
        return
    load_prompts(c, source)
    if c.baseline is not None:
        baseline_probes(c.baseline, source)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_probes(new: list[Probe], base: list[Probe]) -> list[int]:
    """Indexes of `new` whose output differs from the baseline's probe with the same prompt (a prompt the baseline
    lacks, or a failed probe on either side, counts as changed: nothing shows it answered the same)."""
    ref = {b.prompt: b.sha256 for b in base}
    return [i for i, p in enumerate(new) if p.sha256 is None or ref.get(p.prompt) != p.sha256]


def _request(url: str, body: dict, api_key: str | None, timeout_s: float) -> tuple[dict | None, str | None, float]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:  # noqa: S310 — the scenario's own endpoint
            return json.loads(r.read()), None, (time.perf_counter() - t0) * 1000
    except urllib.error.HTTPError as e:
        return None, f"HTTP {e.code}: {e.read()[:300].decode('utf-8', 'replace')}", (time.perf_counter() - t0) * 1000
    except (OSError, ValueError) as e:
        return None, f"{e.__class__.__name__}: {e}", (time.perf_counter() - t0) * 1000


def probe_body(api: str, model: str, prompt: str, max_tokens: int, seed: int) -> dict:
    """Greedy: temperature 0 and a fixed seed; no streaming, no ignore_eos (the engine's own stop counts)."""
    common = {"model": model, "max_tokens": max_tokens, "temperature": 0.0, "seed": seed, "stream": False}
    if api == "chat":
        return {**common, "messages": [{"role": "user", "content": prompt}]}
    return {**common, "prompt": prompt}


def run_probes(sc: Scenario, base_url: str) -> Correctness:
    """Send every probe in order and record what came back (a failed probe is recorded, not raised)."""
    c = sc.workload.correctness
    if c is None:
        raise HarnessError("workload.correctness is not set")
    prompts, source = load_prompts(c)
    api = sc.workload.api
    url = base_url.rstrip("/") + ("/v1/chat/completions" if api == "chat" else "/v1/completions")
    key = os.environ.get(sc.target.api_key_env) if sc.target.api_key_env else None
    started = time.time()
    probes = []
    for prompt in prompts:
        doc, err, ms = _request(url, probe_body(api, sc.target.model, prompt, c.max_tokens, c.seed), key, c.timeout_s)
        if doc is None:
            probes.append(Probe(prompt=prompt, error=err, latency_ms=round(ms, 3)))
            continue
        try:
            choice = doc["choices"][0]
            text = (choice.get("message") or {}).get("content") if api == "chat" else choice.get("text")
            text = text or ""
            tokens = (doc.get("usage") or {}).get("completion_tokens")
            probes.append(
                Probe(
                    prompt=prompt,
                    output=text,
                    sha256=digest(text),
                    output_tokens=int(tokens) if tokens is not None else None,
                    finish_reason=choice.get("finish_reason"),
                    latency_ms=round(ms, 3),
                )
            )
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            probes.append(Probe(prompt=prompt, error=f"unexpected reply ({e}): {str(doc)[:300]}", latency_ms=ms))
    rec = Correctness(
        api=api,
        model=sc.target.model,
        max_tokens=c.max_tokens,
        seed=c.seed,
        source=source,
        probes=probes,
        started_at=started,
        duration_s=round(time.time() - started, 3),
    )
    if c.baseline is not None:
        base = baseline_probes(c.baseline)
        rec.baseline = c.baseline
        rec.changed = changed_probes(probes, base.probes)
    return rec


def outputs_signal(rec: Correctness | None) -> dict[str, dict[str, float]]:
    """The SLO signal `outputs` (changed only with a baseline); {} without probes: server SLOs then have no data."""
    if rec is None:
        return {}
    block = {
        "total": float(len(rec.probes)),
        "empty": float(sum(1 for p in rec.probes if p.error is not None or not p.output)),
    }
    if rec.baseline is not None:
        block["changed"] = float(len(rec.changed))
    return {"outputs": block}
