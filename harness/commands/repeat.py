"""`--repeat N`: the same scenario N times as one repeat group, the unit `harness compare` tests between runs.

Mode `same_deployment`: one stack and one Serve app for the whole group. The first repeat deploys; the app stays
deployed between repeats (the last repeat undeploys it unless --keep-app); before each repeat's load the
engine's prefix cache is reset (harness/deploy/cache.py; --no-cache-reset turns it off), so no repeat is
served from prompts an earlier one left in the cache. A fresh deployment per repeat would add a deploy (seconds
for the sim engine, minutes for vLLM on CPU) and replica warm-up to each repeat's noise, without removing the
noise that matters here (the shared machine).

Layout: `<results>/repeat-<scenario>-<time>-<hex>/` holds `repeat.json` (the group: runs, exit codes, the
between-run interval of the gated statistics) and one ordinary run folder per repeat. Each run's run.json
carries `repeat` {group_id, index, count, mode, cache_reset} and its `cache_reset` result.

Exit code of the group: 130 if a repeat was interrupted, 2 if one failed to set up, 1 if any repeat failed its
SLOs, else 0 (a release gate fails if any repeat fails). `--repeat-until-width X`: after at least 3 repeats,
stop once the t-interval of every gated statistic (compare's --fail-on metrics) is narrower than X (relative to
its mean, full width).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PASS, EXIT_SLO_FAILED, HarnessError
from harness.record.schema import RepeatGroup
from harness.scenario import Scenario

MODE: Literal["same_deployment"] = "same_deployment"


@dataclass
class RepeatResult:
    group_dir: Path
    doc: dict
    outcomes: list = field(default_factory=list)  # RunOutcome per repeat

    @property
    def exit_code(self) -> int:
        return int(self.doc["exit_code"])


def group_exit_code(codes: list[int]) -> int:
    """130 interrupted > 2 setup problem > 1 an SLO failed > 0 every repeat passed."""
    if EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED
    if any(c not in (EXIT_PASS, EXIT_SLO_FAILED) for c in codes):
        return EXIT_BAD_INPUT
    return EXIT_SLO_FAILED if EXIT_SLO_FAILED in codes else EXIT_PASS


def converged(intervals: dict[str, dict], width: float) -> bool:
    """Every gated statistic has a t-interval narrower than `width` (relative full width)."""
    widths = [iv.get("width_rel") for iv in intervals.values()]
    return bool(widths) and all(w is not None and w <= width for w in widths)


@contextmanager
def held_stack(scenario: Scenario, opts) -> Iterator[None]:
    """One stack for many pipeline runs: the `harness up` stack, an attached cluster, or one started here (and
    stopped at the end unless opts.keep_up). Afterwards the user's stack is left without our app."""
    from harness import deploy as deploy_stage
    from harness import stack as stack_stage
    from harness.stack import ray_client

    attached = bool(opts.ray_address or opts.prometheus_url or getattr(opts, "dashboard_url", None))
    started = None
    if scenario.target.engine != "external" and not attached and stack_stage.load_current() is None:
        started = stack_stage.start_local_stack()
        stack_stage.save_current(started)
    try:
        yield
    finally:
        ray_client.disconnect()  # repeats stayed connected
        if started is not None and not opts.keep_up:
            stack_stage.stop_local_stack(started)
            stack_stage.clear_current()
        elif getattr(opts, "dashboard_url", None) and scenario.target.engine != "external" and not opts.keep_app:
            from harness.deploy.rest import undeploy_rest
            from harness.errors import StackError
            from harness.stack.dashboard import Dashboard

            try:  # a group that stopped early kept its app for a next repeat: remove it (only if it is ours)
                undeploy_rest(Dashboard(opts.dashboard_url), scenario.target.app_name)
            except StackError:
                pass
        elif scenario.target.engine != "external" and not attached and not opts.keep_app:
            cur = stack_stage.load_current()
            if cur is not None:  # leave the user's stack as we found it: without our app
                try:
                    ray_client.connect_ray(cur.ray_address, cur.ray_env)
                    t = scenario.target
                    deploy_stage.undeploy(deploy_stage.Deployment(t.engine, t.app_name, "", t.model, 0.0))
                finally:
                    ray_client.disconnect()


def run_repeats(
    scenario: Scenario,
    opts,
    count: int,
    ui,
    *,
    cache_reset: bool = True,
    until_width: float | None = None,
    gate: list[str] | None = None,
    hold_stack: bool = True,
    on_repeat=None,
) -> RepeatResult:
    """Run `scenario` up to `count` times in one repeat group (see the module docstring)."""
    from harness.compare import group_intervals
    from harness.compare.rules import parse_rules
    from harness.record.store import write_json
    from harness.run.pipeline import run as run_pipeline

    if count < 1:
        raise HarnessError(f"--repeat {count}: must be >= 1", fix="e.g. --repeat 3 (3 or more for between-run tests)")
    if until_width is not None and not 0 < until_width < 10:
        raise HarnessError(f"--repeat-until-width {until_width}: must lie in (0, 10)", fix="e.g. 0.05 for 5 %")
    keys = [r.metric for r in parse_rules(gate)]
    gid = f"repeat-{scenario.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"
    group_dir = Path(opts.results_dir).absolute() / gid
    group_dir.mkdir(parents=True, exist_ok=False)
    doc: dict = {
        "schema_version": 1,
        "group_id": gid,
        "group_dir": str(group_dir),
        "scenario": scenario.name,
        "mode": MODE,
        "cache_reset": cache_reset,
        "count": count,
        "until_width": until_width,
        "gated": keys,
        "runs": [],
        "intervals": {},
        "stopped": None,
        "exit_code": None,
    }
    res = RepeatResult(group_dir, doc)
    summaries: list[dict] = []

    def body() -> None:
        for i in range(1, count + 1):
            o = replace(
                opts,
                results_dir=group_dir,
                keep_app=opts.keep_app or i < count,
                reuse_app=opts.reuse_app or i > 1,
                stay_connected=opts.stay_connected or i < count,
                cache_reset=cache_reset,
                repeat=RepeatGroup(group_id=gid, index=i, count=count, mode=MODE, cache_reset=cache_reset),
                labels={**opts.labels, "repeat_group": gid},
            )
            if on_repeat:
                on_repeat(i, count)
            out = run_pipeline(scenario, o, ui)
            res.outcomes.append(out)
            s = out.summary or {}
            if out.summary:
                summaries.append(out.summary)
            doc["runs"].append(
                {
                    "index": i,
                    "run_id": out.run_dir.name,
                    "run_dir": str(out.run_dir),
                    "exit_code": out.exit_code,
                    "verdict": s.get("verdict"),
                    "cache_reset": _cache_reset_of(out.run_dir),
                }
            )
            doc["intervals"] = group_intervals(summaries, keys)
            write_json(group_dir / "repeat.json", doc)
            if out.exit_code not in (EXIT_PASS, EXIT_SLO_FAILED):
                doc["stopped"] = f"repeat {i} exited {out.exit_code}: later repeats would fail the same way"
                return
            if until_width is not None and i >= 3 and i < count and converged(doc["intervals"], until_width):
                doc["stopped"] = (
                    f"converged after {i} repeats: every gated statistic's t-interval is narrower than "
                    f"{until_width:.1%} of its mean"
                )
                return

    if hold_stack:
        with held_stack(scenario, opts):
            body()
    else:
        body()
    doc["ran"] = len(doc["runs"])
    doc["exit_code"] = group_exit_code([r["exit_code"] for r in doc["runs"]])
    write_json(group_dir / "repeat.json", doc)
    return res


def _cache_reset_of(run_dir: Path) -> dict | None:
    from harness.record.read import RecordError, read_json_object

    try:
        return read_json_object(run_dir / "run.json").get("cache_reset")
    except RecordError:
        return None
