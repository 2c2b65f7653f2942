"""`harness compare`: runs side by side, with significance from raw samples and a regression gate.

`compare_runs([base, new, ...])` returns a plain dict (JSON-ready) that the renderers in harness/report/
(compare_md, compare_html) and the terminal table show; its `exit_code` is 1 when a `--fail-on` rule fired.

A path may be a repeat group (the folder `harness run --repeat N` writes: repeat.json plus one run folder per
repeat). When every side has at least 3 runs, the runs are the unit: between-run mean, t-interval and
coefficient of variation per statistic, Welch's t-test between groups (harness/compare/between.py). Otherwise
the first run of each side is compared within-run (block bootstrap over its samples). `method` says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.compare import between, fingerprints, stats
from harness.compare.outputs import outputs_diff
from harness.compare.rules import DEFAULT_RULES, Rule, check_rules
from harness.compare.significance import DEFAULT_RESAMPLES, DEFAULT_SEED, diff_intervals, mann_whitney_p
from harness.errors import EXIT_PASS, EXIT_SLO_FAILED, HarnessError
from harness.record.health import MAX_ERROR_RATE, load_failure

COMPARE_SCHEMA_VERSION = 1
MIN_TAIL = 5  # a percentile is only tested when each run has at least this many values beyond it
__all__ = ["compare_runs", "load_run", "RunData", "DEFAULT_RULES", "IncomparableError", "BrokenRunError"]


class IncomparableError(HarnessError):
    """The runs measure different things (scenario name, load or workload differ)."""


class BrokenRunError(IncomparableError):
    """A run's load itself failed (see harness/record/health.py): its numbers are no basis for a comparison."""


@dataclass
class RunData:
    dir: Path
    run: dict
    summary: dict
    samples: pd.DataFrame | None

    @property
    def run_id(self) -> str:
        return self.run.get("run_id") or self.dir.name

    @property
    def label(self) -> str:
        labels = self.run.get("labels") or {}
        return " ".join(f"{k}={v}" for k, v in labels.items()) or self.run_id

    def window(self) -> tuple[float | None, float | None]:
        """The stats window the summary used: warmup end → stats end (last stage's end or cooldown start)."""
        load, tl = self.run.get("load") or {}, self.run.get("timeline") or {}
        end = load.get("stats_end") or load.get("ended_at") or tl.get("load_ended_at")
        return (load.get("warmup_end") or tl.get("warmup_end_at"), end)


def load_run(path: Path) -> RunData:
    """A run folder, upgraded to the current schema (run.json, summary.json, samples.parquet), read through the
    one reader (harness/record/read.py): a malformed file is exit 2 naming it."""
    from harness.record import read_run
    from harness.record.read import SAMPLES_FILE, read_samples

    path = Path(path)
    run, summary = read_run(path)
    if summary is None:
        raise HarnessError(
            f"{path}: no summary.json (the run stopped before evaluation: status {run.get('status')!r})",
            fix="compare runs that reached the evaluate stage",
        )
    return RunData(path, run, summary, read_samples(path / SAMPLES_FILE))


def is_group(path: Path) -> bool:
    """A repeat group folder: repeat.json, or no run.json of its own but run folders inside."""
    path = Path(path)
    if (path / "repeat.json").is_file():
        return True
    return path.is_dir() and not (path / "run.json").exists() and any(path.glob("*/run.json"))


def group_runs(path: Path) -> list[Path]:
    """The run folders of a group, in the order they ran (repeat.json's list, else by folder name)."""
    from harness.record.read import GROUP_FILE, read_group

    path = Path(path)
    runs = []
    if (path / GROUP_FILE).exists():
        doc = read_group(path)  # a repeat.json that is there must be one
        runs = [path / Path(r["run_dir"]).name for r in doc.get("runs", []) if r.get("run_dir")]
    runs = [r for r in runs if (r / "summary.json").exists()] or sorted(p.parent for p in path.glob("*/summary.json"))
    if not runs:
        raise HarnessError(
            f"{path}: a repeat group folder without finished runs (no */summary.json)",
            fix="give the folder `harness run --repeat N` printed, after at least one repeat finished",
        )
    return runs


def _run_info(r: RunData) -> dict:
    return {
        "run_id": r.run_id,
        "dir": str(r.dir),
        "label": r.label,
        "labels": r.run.get("labels") or {},
        "scenario": r.summary.get("scenario"),
        "status": r.summary.get("status"),
        "verdict": r.summary.get("verdict"),
        "environment": fingerprints.describe(r.run),
        "software": fingerprints.software(r.run),
        "hardware": fingerprints.hardware(r.run),
        "created_at": (r.run.get("timeline") or {}).get("created_at"),
        "requests": (r.summary.get("client") or {}).get("requests"),
        "has_samples": r.samples is not None,
        "load_failure": load_failure(r.summary),
    }


def _values(r: RunData, signal: str) -> stats.Values | None:
    if r.samples is None or not len(r.samples):
        return None
    if signal in ("throughput", "request_rate"):
        bins = stats.rate_bins(r.samples, *r.window(), what="tokens" if signal == "throughput" else "requests")
        if bins is None:
            return None
        g, n = stats.bin_blocks(bins.size)
        return stats.Values(bins, g, n)
    return stats.signal_values(r.samples, signal)


_REDUCERS: dict[str, Callable[[np.ndarray], Any]] = {"mean": np.mean, "max": np.max, "min": np.min}


def _observed(m: stats.Metric, r: RunData) -> float | None:
    """The summary's value; for a client distribution an older summary lacks, computed from the samples."""
    v = stats.observed(m, r.summary)
    if v is None and m.source == "client" and m.signal in stats.DIST_SIGNALS and r.samples is not None:
        vals = stats.signal_values(r.samples, m.signal)
        if vals is not None:
            a = vals.values
            reduce = _REDUCERS.get(m.stat)
            v = float(reduce(a) if reduce is not None else np.percentile(a, float(m.stat[1:])))
    return v


def _assess(m: stats.Metric, change: float | None, significant: bool | None) -> str:
    if change is None:
        return "no data"
    if significant is None:
        return "untested"
    if not significant:
        return "within noise"
    if not m.worse:
        return "changed"
    return "worse" if (change > 0) == (m.worse == "up") else "better"


def compare_pair(
    base: RunData, new: RunData, rules: list[Rule], *, seed: int, resamples: int, confidence: float
) -> dict:
    metrics = stats.client_metrics() + stats.server_metrics([base.summary, new.summary])
    extra = {r.metric for r in rules} - {m.key for m in metrics}
    for key in sorted(extra):  # a rule may name a client percentile not shown by default (e.g. ttft.p99.9)
        sig, _, st = key.partition(".")
        if sig in stats.DIST_SIGNALS and st in ("p99.9", "max", "min"):
            metrics.append(stats.Metric(key, sig, st, "ms", "up", "client"))
    rule_for = {r.metric: r for r in rules}
    by_signal: dict[str, list[stats.Metric]] = {}
    for m in metrics:
        by_signal.setdefault(m.signal, []).append(m)
    rows = []
    for signal, ms in by_signal.items():
        intervals, p_mwu, vb, vn = {}, None, None, None
        if ms[0].source == "client":
            vb, vn = _values(base, signal), _values(new, signal)
            testable = [m.stat for m in ms if m.stat not in ("max", "min")]
            if vb is not None and vn is not None and testable:
                intervals = diff_intervals(
                    vb,
                    vn,
                    ["value" if s == "value" else s for s in testable],
                    seed=seed,
                    resamples=resamples,
                    confidence=confidence,
                )
            if signal in stats.DIST_SIGNALS and base.samples is not None and new.samples is not None:
                p_mwu = mann_whitney_p(stats.per_request(base.samples, signal), stats.per_request(new.samples, signal))
        for m in ms:
            b, n = _observed(m, base), _observed(m, new)
            change = None if b is None or n is None else n - b
            rel = None if change is None or not b else change / abs(b)
            ci = intervals.get(m.stat)
            significant = None if ci is None or change is None else ci.significant
            thin = (
                ci is not None
                and vb is not None
                and vn is not None
                and m.stat.startswith("p")
                and min(vb.values.size, vn.values.size) * (1 - float(m.stat[1:]) / 100) < MIN_TAIL
            )
            if thin:  # e.g. p99 of 150 requests: 1-2 values decide it; a bootstrap cannot judge that tail
                significant, ci = False, None
            rule = rule_for.get(m.key)
            beyond = bool(rule and rule.beyond(b, n))
            if rule and beyond and not thin:
                bad_and_sure = significant is None or ci is None or (ci.low > 0 if rule.sign > 0 else ci.high < 0)
            else:
                bad_and_sure = False
            rows.append(
                {
                    "key": m.key,
                    "signal": m.signal,
                    "stat": m.stat,
                    "unit": m.unit,
                    "source": m.source,
                    "worse": m.worse,
                    "base": b,
                    "new": n,
                    "change": change,
                    "rel_change": rel,
                    "ci": None if ci is None else [ci.low, ci.high],
                    "resamples": None if ci is None else ci.resamples,
                    "significant": significant,
                    "p_mwu": p_mwu if m.stat != "value" else None,
                    "assessment": "too few samples" if thin else _assess(m, change, significant),
                    "rule": rule.text if rule else None,
                    "beyond_threshold": beyond,
                    "regression": bad_and_sure,
                }
            )
    problems, warnings = fingerprints.check(base.run, new.run)
    for r in (base, new):
        if r.samples is None:
            warnings.append(
                f"{r.run_id}: no samples.parquet — changes are not tested for significance; "
                "rules gate on the threshold alone"
            )
    for row in rows:
        if row["rule"] and row["assessment"] == "too few samples" and row["beyond_threshold"]:
            warnings.append(
                f"{row['key']} moved beyond {row['rule']} but too few samples lie beyond that percentile "
                f"to judge it (need {MIN_TAIL} per run): not gated; run longer"
            )
    present = {row["key"] for row in rows if row["change"] is not None}
    for rule in rules:
        if rule.metric not in present:
            warnings.append(f"--fail-on {rule.text}: no data for {rule.metric} in both runs (not gated)")
    regressions = [_regression_text(row) for row in rows if row["regression"]]
    return {
        "base": base.run_id,
        "new": new.run_id,
        "rows": rows,
        "problems": problems,
        "warnings": warnings,
        "notes": fingerprints.series_notes(base.summary, new.summary),
        "regressions": regressions,
    }


def _regression_text(row: dict) -> str:
    rel = f"{row['rel_change'] * 100:+.1f}%" if row["rel_change"] is not None else f"{row['change']:+.4g}"
    if row["signal"] == "error_rate":
        rel = f"{row['change'] * 100:+.2f} pp"
    sig = (
        f"significant: {row['resamples']}-resample 95% CI of the change [{row['ci'][0]:+.4g}, {row['ci'][1]:+.4g}]"
        if row["ci"]
        else "no significance test for this metric: gated on the change alone"
    )
    return f"{row['key']} {rel} ({row['base']:.4g} → {row['new']:.4g}) beyond {row['rule'].partition(':')[2]}; {sig}"


def _between_row(m: stats.Metric, bv: list[float], nv: list[float], rule: Rule | None, confidence: float) -> dict:
    b = between.group_stats(bv) if bv else None
    n = between.group_stats(nv) if nv else None
    w = between.welch(bv, nv, confidence) if len(bv) >= between.MIN_RUNS and len(nv) >= between.MIN_RUNS else None
    bm, nm = (b.mean if b else None), (n.mean if n else None)
    change = None if bm is None or nm is None else nm - bm
    rel = None if change is None or not bm else change / abs(bm)
    significant = None if w is None else w.significant
    beyond = bool(rule and rule.beyond(bm, nm))
    sure = w is not None and rule is not None and (w.ci[0] > 0 if rule.sign > 0 else w.ci[1] < 0)
    if change is None:
        assessment = "no data"
    elif w is None:
        assessment = "too few runs"
    else:
        assessment = _assess(m, change, significant)
    return {
        "key": m.key,
        "signal": m.signal,
        "stat": m.stat,
        "unit": m.unit,
        "source": m.source,
        "worse": m.worse,
        "base": bm,
        "new": nm,
        "change": change,
        "rel_change": rel,
        "ci": None if w is None else list(w.ci),
        "resamples": None,
        "significant": significant,
        "p_mwu": None,
        "p_welch": None if w is None else w.p,
        "base_runs": b.to_dict() if b else None,
        "new_runs": n.to_dict() if n else None,
        "assessment": assessment,
        "rule": rule.text if rule else None,
        "beyond_threshold": beyond,
        "regression": bool(beyond and sure),
    }


def compare_groups_between(base: list[RunData], new: list[RunData], rules: list[Rule], *, confidence: float) -> dict:
    """Runs as the unit: one value per run and statistic, Welch's t-test between the two groups."""
    metrics = stats.client_metrics() + stats.server_metrics([r.summary for r in base + new])
    rule_for = {r.metric: r for r in rules}
    rows = []
    for m in metrics:
        bv = [v for r in base if (v := _observed(m, r)) is not None]
        nv = [v for r in new if (v := _observed(m, r)) is not None]
        rows.append(_between_row(m, bv, nv, rule_for.get(m.key), confidence))
    problems, warnings = [], []
    for r in new:
        p, w = fingerprints.check(base[0].run, r.run)
        problems += p
        warnings += w
    for r in base[1:]:
        problems += fingerprints.check(base[0].run, r.run)[0]
    present = {row["key"] for row in rows if row["change"] is not None}
    for rule in rules:
        if rule.metric not in present:
            warnings.append(f"--fail-on {rule.text}: no data for {rule.metric} in both groups (not gated)")
    for row in rows:
        if row["rule"] and row["key"] in present and row["p_welch"] is None:
            warnings.append(f"{row['key']}: fewer than {between.MIN_RUNS} runs with a value on a side (not gated)")
    return {
        "base": base[0].run_id,
        "new": new[0].run_id,
        "rows": rows,
        "problems": sorted(set(problems)),
        "warnings": list(dict.fromkeys(warnings)),
        "notes": fingerprints.series_notes(base[0].summary, new[0].summary),
        "regressions": [_between_text(row) for row in rows if row["regression"]],
    }


def _between_text(row: dict) -> str:
    rel = f"{row['rel_change'] * 100:+.1f}%" if row["rel_change"] is not None else f"{row['change']:+.4g}"
    if row["signal"] == "error_rate":
        rel = f"{row['change'] * 100:+.2f} pp"
    b, n = row["base_runs"], row["new_runs"]
    return (
        f"{row['key']} {rel} (mean of {b['n']} runs {row['base']:.4g} → mean of {n['n']} runs {row['new']:.4g}) "
        f"beyond {row['rule'].partition(':')[2]}; significant between runs: Welch t-test p={row['p_welch']:.3g}, "
        f"95% CI of the difference of means [{row['ci'][0]:+.4g}, {row['ci'][1]:+.4g}]"
    )


def _compare_outputs(pairs: list[dict], base: RunData, news: list[RunData]) -> None:
    """workload.correctness probes: a changed answer is a regression, whatever the latencies say."""
    for p, r in zip(pairs, news):
        p["outputs"] = outputs_diff(base.run, r.run)
        if p["outputs"] and p["outputs"]["changed"]:
            n = len(p["outputs"]["changed"])
            p["regressions"].append(f"outputs: {n} of {p['outputs']['compared']} correctness probe(s) changed")


def compare_runs(
    paths: list[Path],
    *,
    fail_on: list[str] | None = None,
    force: bool = False,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
) -> dict:
    """Compare every run after the first against the first. Raises IncomparableError (unless force)."""
    if len(paths) < 2:
        raise HarnessError("compare needs at least two run folders", fix="harness compare BASE NEW [MORE...]")
    rules = check_rules(fail_on)
    sides = [[load_run(r) for r in group_runs(p)] if is_group(p) else [load_run(p)] for p in paths]
    if all(len(s) >= between.MIN_RUNS for s in sides):
        return _compare_between(paths, sides, rules, force=force, confidence=confidence)
    method = _method("within-run", sides, paths)
    runs = [s[0] for s in sides]
    broken = [
        f"{r.run_id} ({r.dir}): not comparable, the load failed: {why}"
        for r in runs
        if (why := load_failure(r.summary))
    ]
    if broken and not force:  # two runs with 100 % errors are not "no regression"
        raise BrokenRunError(
            "cannot compare: a run's load failed, so its latency and throughput describe failures",
            problems=broken,
            fix="fix the run (see errors_by_class in its summary.json and its "
            f"report) and run it again; a run is comparable when it completed and at most "
            f"{MAX_ERROR_RATE:.0%} of its requests failed; --force compares anyway",
        )
    pairs = [compare_pair(runs[0], r, rules, seed=seed, resamples=resamples, confidence=confidence) for r in runs[1:]]
    problems = [f"{p['new']}: {x}" for p in pairs for x in p["problems"]]
    if problems and not force:
        raise IncomparableError(
            "the runs are not comparable",
            problems=problems,
            fix="compare runs of the same scenario, load and workload, or pass --force",
        )
    if force:
        for p in pairs:
            p["warnings"] = [f"(forced) {x}" for x in p["problems"]] + p["warnings"]
        for p in pairs:
            p["warnings"] = [f"(forced) {x}" for x in broken if x.startswith((p["base"] + " ", p["new"] + " "))] + p[
                "warnings"
            ]
    cdf = {}
    for sig in stats.DIST_SIGNALS:
        curves = []
        for r in runs:
            v = stats.signal_values(r.samples, sig) if r.samples is not None and len(r.samples) else None
            if v is not None and v.values.size:
                curves.append({"run_id": r.run_id, "label": r.label, **stats.cdf_points(v.values)})
        if curves:
            cdf[sig] = curves
    _compare_outputs(pairs, runs[0], runs[1:])
    regressed = any(p["regressions"] for p in pairs)
    for p in pairs:
        p["method"] = method["kind"]
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "method": method,
        "groups": _groups_info(paths, sides),
        "runs": [_run_info(r) for r in runs],
        "comparisons": pairs,
        "rules": [r.to_dict() for r in rules],
        "settings": {
            "seed": seed,
            "resamples": resamples,
            "confidence": confidence,
            "forced": force,
            "method": "block bootstrap over time (requests and rate bins in blocks of "
            f"{stats.BLOCK_S:g} s, at least {stats.MIN_BLOCKS} blocks): CI of new - base; "
            "significant when the CI excludes 0",
        },
        "cdf": cdf,
        "load_failures": broken,  # non-empty only with --force
        "verdict": "regression" if regressed else "ok",
        "exit_code": EXIT_SLO_FAILED if regressed else EXIT_PASS,
    }


def _method(kind: str, sides: list[list[RunData]], paths: list[Path]) -> dict:
    n = [len(s) for s in sides]
    if kind == "between-run":
        why = (
            f"every side has >= {between.MIN_RUNS} runs ({', '.join(map(str, n))}): one value per run and "
            "statistic; per side mean, t-interval, coefficient of variation; Welch t-test between sides"
        )
    elif max(n) > 1:
        why = (
            f"runs per side {', '.join(map(str, n))}: fewer than {between.MIN_RUNS} on a side, so no between-run "
            "test; the first run of each side is compared within-run (block bootstrap over its samples)"
        )
    else:
        why = "one run per side: within-run significance (block bootstrap over each run's samples)"
    return {"kind": kind, "runs_per_side": n, "reason": why}


def _groups_info(paths: list[Path], sides: list[list[RunData]]) -> list[dict]:
    return [
        {"dir": str(p), "name": Path(p).name, "group": is_group(p), "runs": [r.run_id for r in s], "n": len(s)}
        for p, s in zip(paths, sides)
    ]


def _compare_between(
    paths: list[Path], sides: list[list[RunData]], rules: list[Rule], *, force: bool, confidence: float
) -> dict:
    broken = [
        f"{r.run_id} ({r.dir}): not comparable, the load failed: {why}"
        for s in sides
        for r in s
        if (why := load_failure(r.summary))
    ]
    if broken and not force:
        raise BrokenRunError(
            "cannot compare: a repeat's load failed, so its numbers describe failures",
            problems=broken,
            fix="run the group again (or drop the broken repeat's folder from it); --force compares anyway",
        )
    pairs = [compare_groups_between(sides[0], s, rules, confidence=confidence) for s in sides[1:]]
    problems = [f"{p['new']}: {x}" for p in pairs for x in p["problems"]]
    if problems and not force:
        raise IncomparableError(
            "the runs are not comparable",
            problems=problems,
            fix="compare groups of the same scenario, load and workload, or pass --force",
        )
    method = _method("between-run", sides, paths)
    _compare_outputs(pairs, sides[0][0], [side[0] for side in sides[1:]])  # the first run of each group
    for p in pairs:
        p["method"] = method["kind"]
        if force:
            p["warnings"] = [f"(forced) {x}" for x in p["problems"] + broken] + p["warnings"]
    cdf = {}
    for sig in stats.DIST_SIGNALS:  # pooled over each group's runs
        curves = []
        for path, side in zip(paths, sides):
            vals = [v.values for r in side if r.samples is not None and (v := stats.signal_values(r.samples, sig))]
            if vals and sum(a.size for a in vals):
                pooled = stats.cdf_points(np.concatenate(vals))
                curves.append({"run_id": side[0].run_id, "label": Path(path).name, **pooled})
        if curves:
            cdf[sig] = curves
    regressed = any(p["regressions"] for p in pairs)
    runs = []
    for path, side in zip(paths, sides):  # one row per side: its first run, labelled by the group
        info = _run_info(side[0])
        info.update(
            label=Path(path).name,
            repeats=len(side),
            requests=sum((r.summary.get("client") or {}).get("requests") or 0 for r in side),
        )
        runs.append(info)
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "method": method,
        "groups": _groups_info(paths, sides),
        "runs": runs,
        "comparisons": pairs,
        "rules": [r.to_dict() for r in rules],
        "settings": {
            "seed": None,
            "resamples": None,
            "confidence": confidence,
            "forced": force,
            "method": "between-run: one value per run and statistic (its summary); Welch t-test of the difference "
            "of group means with Welch-Satterthwaite degrees of freedom; significant when its "
            f"{confidence:.0%} t-interval excludes 0",
        },
        "cdf": cdf,
        "load_failures": broken,
        "verdict": "regression" if regressed else "ok",
        "exit_code": EXIT_SLO_FAILED if regressed else EXIT_PASS,
    }


def group_intervals(summaries: list[dict], keys: list[str], confidence: float = 0.95) -> dict[str, dict]:
    """Between-run mean, t-interval, CV (and relative interval width) of each statistic over a group's summaries."""
    known = {m.key: m for m in stats.client_metrics() + stats.server_metrics(summaries)}
    out: dict[str, dict] = {}
    for key in keys:
        m = known.get(key)
        vals = [v for s in summaries if m is not None and (v := stats.observed(m, s)) is not None]
        out[key] = between.group_stats(vals, confidence).to_dict() if vals else {"n": 0}
    return out
