"""What must match for two runs to be comparable, and what should match for the comparison to be fair.

- scenario: name, load and workload must be equal (else the runs measure different things: refuse unless forced);
  other scenario differences (target, SLOs, scrape) are reported, since a comparison often varies exactly those;
- hardware: CPU count, machine, nodes, GPUs — a difference is a warning;
- software: Python, Ray, vLLM, Locust, torch, harness — a difference is a warning (or the point of a matrix).
"""

from __future__ import annotations

from typing import Any

MUST_MATCH = ("name", "load", "workload")
SOFTWARE = ("python", "ray", "vllm", "locust", "torch", "harness", "git_commit")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: d}


def diff(a: Any, b: Any) -> list[str]:
    """Dotted paths whose values differ: `target.sim.slowdown_factor: 1.0 → 1.5`."""
    fa, fb = flatten(a), flatten(b)
    return [
        f"{k}: {fa.get(k, '(absent)')!r} → {fb.get(k, '(absent)')!r}"
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    ]


def hardware(run: dict) -> dict:
    env = run.get("environment") or {}
    cl = env.get("cluster") or {}
    gpus = env.get("gpus_nvidia_smi") or []
    inv = env.get("inventory") or {}
    return {
        "machine": env.get("machine"),
        "cpu_count": env.get("cpu_count"),
        "nodes": cl.get("nodes"),
        "cluster_cpus": cl.get("cpus"),
        "gpus": cl.get("gpus") if cl else len(gpus),
        "accelerators": cl.get("accelerators") or None,
        "gpu_models": sorted({g.get("name") for g in gpus}) or None,
        # run.json environment.inventory (older records lack it: absent on both sides is no difference)
        **{k: inv.get(k) for k in ("cpu_model", "memory_total_bytes", "gpu_driver", "cuda")},
        "node_accelerators": [(n.get("accelerator_type"), n.get("gpus")) for n in inv.get("nodes") or []] or None,
        "container_image": (inv.get("container") or {}).get("image"),
    }


def software(run: dict) -> dict:
    env = run.get("environment") or {}
    return {k: env.get(k) for k in SOFTWARE}


def describe(run: dict) -> str:
    h, s = hardware(run), software(run)
    gpu = f"{h['gpus'] or 0:g} GPU" + (f" ({', '.join(h['gpu_models'])})" if h["gpu_models"] else "")
    return (
        f"Ray {s['ray'] or '?'}, vLLM {s['vllm'] or '—'}, Python {s['python'] or '?'}; "
        f"{h['cpu_count'] or '?'} CPUs, {h['nodes'] or '?'} node(s), {gpu}"
    )


def check(base: dict, new: dict) -> tuple[list[str], list[str]]:
    """(problems that make the runs incomparable, warnings) for base vs new run.json."""
    sa, sb = base.get("scenario") or {}, new.get("scenario") or {}
    problems = []
    for key in MUST_MATCH:
        if sa.get(key) != sb.get(key):
            d = (
                diff(sa.get(key), sb.get(key))
                if isinstance(sa.get(key), dict)
                else [f"{sa.get(key)!r} → {sb.get(key)!r}"]
            )
            problems.append(
                f"scenario {key} differs: " + "; ".join(d[:6]) + (f"; … {len(d) - 6} more" if len(d) > 6 else "")
            )
    warnings = []
    rest = {k: v for k, v in sa.items() if k not in MUST_MATCH + ("description",)}
    rest_b = {k: v for k, v in sb.items() if k not in MUST_MATCH + ("description",)}
    for line in diff(rest, rest_b):
        warnings.append(f"scenario differs: {line}")
    for kind, fa, fb in (("hardware", hardware(base), hardware(new)), ("software", software(base), software(new))):
        for k in sorted(set(fa) | set(fb)):
            a, b = fa.get(k), fb.get(k)
            unknown = (a is None or b is None) and k not in ("ray", "vllm", "python")  # older records lack some facts
            if a != b and not unknown:
                warnings.append(f"{kind} differs: {k}: {a!r} → {b!r}")
    for r in (base, new):
        if r.get("status") != "completed":
            warnings.append(f"run {r.get('run_id')} has status {r.get('status')!r}: its numbers may be partial")
    return problems, warnings


def series_notes(base_summary: dict, new_summary: dict) -> list[str]:
    """Server signals answered by differently named series (naming eras): compared by logical name."""
    a, b = base_summary.get("server_series") or {}, new_summary.get("server_series") or {}
    return [
        f"{sig}: `{a[sig]}` → `{b[sig]}` (compared as the logical signal {sig})"
        for sig in sorted(set(a) & set(b))
        if a[sig] and b[sig] and a[sig] != b[sig]
    ]
