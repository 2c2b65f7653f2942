"""RunContext (interrupts, failures, optional stages, teardown), record finalisation, leftovers, fault bookkeeping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, StackError
from harness.record.schema import Summary
from harness.record.store import run_state
from harness.run.context import NullUI, RunContext, leftover_pgids, reap_leftovers
from harness.run.faults import FaultEvent, FaultInjector, fault_report, recovery_signal, recovery_stats
from harness.run.recorder import Recorder
from harness.scenario import Fault


def _rec(tmp_path) -> Recorder:
    return Recorder.create(tmp_path, "t", scenario={"name": "t"})


def _summary(status, verdict):
    return Summary(run_id="r", scenario="t", status=status, verdict=verdict)


def _run(tmp_path):
    return json.loads(next(tmp_path.glob("t-*/run.json")).read_text())


def test_interrupt_in_a_stage_is_recorded_and_cleanups_run(tmp_path):
    rec, cleaned = _rec(tmp_path), []
    with RunContext(rec, NullUI(), reap=False) as ctx:
        stack = ctx.stage("stack", lambda: SimpleNamespace(to_dict=lambda: {"local": True}, targets_pending=False))
        rec.record_stack(stack)
        ctx.cleanup(lambda: cleaned.append("stack"))
        ctx.stage("deploy", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    assert ctx.status == "interrupted" and ctx.exit_code == EXIT_INTERRUPTED and cleaned == ["stack"]
    run = _run(tmp_path)
    assert run["status"] == "interrupted" and "deploy" in run["error"] and run["stack"] == {"local": True}
    assert (rec.dir / "report.md").exists()


def test_signal_handler_first_press_in_load_is_graceful_second_forces(tmp_path):
    ctx = RunContext(_rec(tmp_path), NullUI(), reap=False)
    ctx.current, ctx.graceful = "load", True
    ctx._on_signal(signal.SIGINT, None)  # graceful: no exception, the load sees stop_event
    assert ctx.stop_event.is_set() and not ctx.forced
    with pytest.raises(KeyboardInterrupt):
        ctx._on_signal(signal.SIGINT, None)
    assert ctx.forced


def test_signal_during_teardown_first_warns_second_aborts_the_step(tmp_path):
    ctx = RunContext(_rec(tmp_path), NullUI(), reap=False)
    ctx.current = "teardown"
    ctx._on_signal(signal.SIGTERM, None)  # nothing raised: teardown goes on
    with pytest.raises(KeyboardInterrupt):
        ctx._on_signal(signal.SIGINT, None)


def test_forced_cleanup_step_does_not_stop_the_others(tmp_path):
    done = []
    with RunContext(_rec(tmp_path), NullUI(), reap=False) as ctx:
        ctx.cleanup(lambda: done.append("first"))
        ctx.cleanup(lambda: (_ for _ in ()).throw(KeyboardInterrupt))  # a second Ctrl-C lands here
        ctx.stage("deploy", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    assert done == ["first"] and ctx.forced and _run(tmp_path)["status"] == "interrupted"


def test_harness_error_propagates_with_failed_record(tmp_path):
    with pytest.raises(StackError):
        with RunContext(_rec(tmp_path), NullUI(), reap=False) as ctx:
            ctx.stage("stack", lambda: (_ for _ in ()).throw(StackError("no Ray", fix="start it")))
    run = _run(tmp_path)
    assert run["status"] == "failed" and "no Ray" in run["error"] and ctx.exit_code == EXIT_BAD_INPUT


def test_crash_is_recorded_with_traceback_file_not_raised(tmp_path):
    rec = _rec(tmp_path)
    with RunContext(rec, NullUI(), reap=False) as ctx:
        ctx.stage("deploy", lambda: 1 / 0)
    assert ctx.status == "failed" and ctx.exit_code == EXIT_BAD_INPUT
    assert "ZeroDivisionError" in (rec.dir / "crash.log").read_text()


def test_optional_stage_failure_lets_the_run_go_on(tmp_path):
    with RunContext(_rec(tmp_path), NullUI(), reap=False) as ctx:
        out = ctx.stage("scrape", lambda: (_ for _ in ()).throw(ConnectionError("prometheus gone")), optional=True)
        assert out is None
        summary = ctx.stage("evaluate", lambda: _summary("completed", "pass"))
        ctx.conclude(summary, None)
    run = _run(tmp_path)
    assert run["status"] == "completed" and "prometheus gone" in run["stage_errors"]["scrape"] and ctx.exit_code == 0


def test_load_generator_death_marks_the_run_failed(tmp_path):
    with RunContext(_rec(tmp_path), NullUI(), reap=False) as ctx:
        load = SimpleNamespace(interrupted=False, message="Locust was killed by signal 9")
        ctx.conclude(ctx.stage("evaluate", lambda: _summary("failed", "fail")), load)
    run = _run(tmp_path)
    assert run["status"] == "failed" and "Locust" in run["error"] and ctx.exit_code == EXIT_BAD_INPUT


def test_run_state_tells_abandoned_from_running(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    host = socket.gethostname()
    assert run_state({"status": "running", "owner": {"pid": dead.pid, "host": host}})[0] == "abandoned"
    assert run_state({"status": "running", "owner": {"pid": os.getpid(), "host": host}})[0] == "running"
    assert run_state({"status": "completed"}) == ("completed", "")
    rec = _rec(tmp_path)
    assert rec.record.owner.pid == os.getpid()


def test_report_says_abandoned(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    rec = _rec(tmp_path)
    raw = json.loads((rec.dir / "run.json").read_text())
    raw["owner"]["pid"] = 2**22 + 12345  # above the default pid_max: surely dead
    (rec.dir / "run.json").write_text(json.dumps(raw))
    res = CliRunner().invoke(app, ["report", str(rec.dir)])
    assert res.exit_code == 0 and "abandoned" in res.output and "partial" in res.output


def test_no_temp_files_left_by_atomic_writes(tmp_path):
    rec = _rec(tmp_path)
    for _ in range(5):
        rec.save()
    assert [p.name for p in rec.dir.iterdir()] == ["run.json"]


def test_reap_leftovers_kills_only_marked_groups(tmp_path):
    fake_pid = 999999  # a "harness pid" whose markers nothing else carries
    marked = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"--temp-dir=/tmp/harness-ray/{fake_pid}-1"],
        start_new_session=True,
    )
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "/tmp/harness-ray/1234-1"], start_new_session=True
    )
    try:
        time.sleep(0.3)
        assert leftover_pgids(pid=fake_pid) == {marked.pid}
        assert reap_leftovers(pid=fake_pid) == 1
        assert marked.wait(5) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for p in (marked, other):
            p.kill()
            p.wait()


# ---------- faults ----------


class FakeReplicas:
    def __init__(self, n=2, restart_after_polls=3):
        self.names = [f"SERVE_REPLICA::llm#SimLLM#r{i}" for i in range(n)]
        self.n, self.polls, self.after, self.killed = n, 0, restart_after_polls, []

    def deployments(self):
        return ["SimLLM"]

    def alive(self, dep):
        self.polls += 1
        live = [x for x in self.names if x not in self.killed]
        if self.killed and self.polls > self.after:
            live += [f"SERVE_REPLICA::llm#SimLLM#new{i}" for i in range(len(self.killed))]
        return [(x, "serve") for x in live]

    def running(self, dep):
        return len(self.alive(dep))

    def kill(self, name, ns):
        self.killed.append(name)


def test_injector_fires_at_load_time_and_measures_recovery(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.run.faults.POLL_S", 0.05)
    started = tmp_path / "started_at"
    fake = FakeReplicas()
    inj = FaultInjector([Fault(at_s=0.3, action="kill_replica")], "llm", started, replicas=fake).start()
    t0 = time.time()
    started.write_text(str(t0))
    time.sleep(1.5)
    (ev,) = inj.stop(grace_s=2)
    assert ev.error is None and ev.killed == ["SERVE_REPLICA::llm#SimLLM#r0"] and ev.deployment == "SimLLM"
    assert ev.fired_at - t0 == pytest.approx(0.3, abs=0.25)
    assert ev.replicas_before == 2 and ev.min_replicas_seen == 1 and ev.recovered_at > ev.fired_at


def test_injector_reports_a_load_that_never_started(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.run.faults.START_WAIT_S", 0.2)
    inj = FaultInjector(
        [Fault(at_s=1, action="kill_replica")], "llm", tmp_path / "never", replicas=FakeReplicas()
    ).start()
    time.sleep(0.5)
    (ev,) = inj.stop()
    assert ev.fired_at is None and "never started" in ev.error


def test_fault_report_counts_errors_in_the_gap_and_recovery():
    t = 1000.0
    ev = FaultEvent(0, "kill_replica", "SimLLM", 10, fired_at=t, killed=["x"], replicas_before=2, recovered_at=t + 8)
    df = pd.DataFrame(
        {
            "t_start_s": [t - 5, t - 0.5, t - 0.2, t + 1, t + 20],
            "e2e_ms": [100, 600, 300, 200, 100],
            "ok": [True, False, False, True, True],
            "error": [None, "bad_stream", "connection", None, None],
        }
    )
    (r,) = fault_report([ev], df, load_end=t + 30)
    assert r["errors_in_gap"] == 2 and r["errors_in_gap_by_class"] == {"bad_stream": 1, "connection": 1}
    assert r["replica_recovery_s"] == 8 and r["recovery_s"] == 8 and r["last_error_s"] == pytest.approx(0.1)
    assert r["first_ok_after_s"] == pytest.approx(1.2)
    assert recovery_stats([r])["max"] == 8000 and recovery_signal([r])["recovery_time"]["mean"] == 8000


def test_no_recovery_is_no_data_never_a_pass():
    ev = FaultEvent(0, "kill_replica", "SimLLM", 10, fired_at=1.0, killed=["x"], replicas_before=2, recovered_at=None)
    (r,) = fault_report([ev], pd.DataFrame(columns=["t_start_s", "e2e_ms", "ok", "error"]), load_end=30.0)
    assert r["recovery_s"] is None and recovery_signal([r]) == {}
    from harness.slo.evaluate import evaluate

    (v,) = evaluate(["recovery_time.max <= 30s"], {}, recovery_signal([r]), {})
    assert v.passed is False and v.observed is None


def test_report_is_a_stage_rendered_from_the_final_record(tmp_path):
    rec = _rec(tmp_path)
    with RunContext(rec, NullUI(), reap=False) as ctx:
        ctx.conclude(ctx.stage("evaluate", lambda: _summary("completed", "pass")), None)
        ctx.stage("report", ctx.render_reports)
        rendered = (rec.dir / "report.md").stat().st_mtime_ns
    run = _run(tmp_path)
    assert run["status"] == "completed" and "report_s" in run["stage_durations_s"]
    assert {n: run["files"][n] for n in ("report.md", "junit.xml", "report.html")} == dict.fromkeys(
        ("report.md", "junit.xml", "report.html"), "report"
    )
    assert (rec.dir / "report.md").stat().st_mtime_ns == rendered  # the exit's fallback did not render again
    assert "completed" in (rec.dir / "report.md").read_text()
