"""Output correctness between two runs: the greedy probes of run.json `correctness`, prompt by prompt.

A changed answer is a regression (compare exits 1) whatever the latencies say: a build can be fast and wrong."""

from __future__ import annotations

from typing import Any

from harness.record.schema import Correctness


def _probes(run: dict) -> Correctness | None:
    c = run.get("correctness")
    return Correctness.model_validate(c) if c else None


def outputs_diff(base_run: dict, new_run: dict) -> dict[str, Any] | None:
    """None when neither run sent probes; else what was compared and each changed output side by side."""
    base, new = _probes(base_run), _probes(new_run)
    if base is None and new is None:
        return None
    if base is None or new is None:
        which = "base" if base is None else "new"
        return {"compared": 0, "changed": [], "notes": [f"the {which} run sent no correctness probes"]}
    ref = {p.prompt: p for p in base.probes}
    changed, missing = [], []
    for i, p in enumerate(new.probes):
        b = ref.get(p.prompt)
        if b is None:
            missing.append(p.prompt)
            continue
        if p.sha256 is None or b.sha256 != p.sha256:
            changed.append(
                {
                    "index": i,
                    "prompt": p.prompt,
                    "base": b.output if b.error is None else f"<error: {b.error}>",
                    "new": p.output if p.error is None else f"<error: {p.error}>",
                    "base_tokens": b.output_tokens,
                    "new_tokens": p.output_tokens,
                }
            )
    notes = []
    if (base.max_tokens, base.seed, base.api) != (new.max_tokens, new.seed, new.api):
        notes.append(
            f"probe settings differ (max_tokens {base.max_tokens} vs {new.max_tokens}, seed {base.seed} vs "
            f"{new.seed}, api {base.api} vs {new.api}): outputs may differ for that reason alone"
        )
    if missing:
        notes.append(f"{len(missing)} prompt(s) of the new run are not in the base run: not compared")
    return {"compared": len(new.probes) - len(missing), "changed": changed, "notes": notes}
