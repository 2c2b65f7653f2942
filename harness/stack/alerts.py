"""Live alerts for local stacks: the project's alert rules in the local Prometheus, a local Alertmanager
(Debian's `prometheus-alertmanager`), and a webhook receiver owned by the run.

    Prometheus (rules: docker/prometheus/rules/alerts.yml, `for:` shortened) ─▶ Alertmanager (127.0.0.1, no
    HA gossip) ─webhook─▶ AlertReceiver (127.0.0.1, the run's) ─▶ run.json `alerts` + SLO signals

The rule file is the one the docker stack and the promtool tests use; only each rule's `for:` is capped at
LOCAL_FOR_S so that a short test run can see an alert fire (the record says so).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from harness.errors import StackError
from harness.paths import asset_dir
from harness.stack.net import LOOPBACK, free_port, http_get

RULES = asset_dir("docker") / "prometheus" / "rules" / "alerts.yml"  # checkout or installed wheel
LOCAL_FOR_S = 3.0
NODE_DOWN_ALERT = "RayNodeDown"
INSTALL_HINT = "apt-get install -y prometheus-alertmanager"


def _dur_s(v: str) -> float:
    total = 0.0
    for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(v)):
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[u]
    return total


def local_rules(state_dir: Path, for_cap_s: float = LOCAL_FOR_S) -> Path:
    """The project's rule file with every `for:` capped at for_cap_s (written to the stack's state dir)."""
    data = yaml.safe_load(RULES.read_text())
    for g in data.get("groups", []):
        for r in g.get("rules", []):
            if "for" in r and _dur_s(r["for"]) > for_cap_s:
                r["for"] = f"{for_cap_s:g}s"
    out = state_dir / "alerts.local.yml"
    out.write_text(
        "# generated from docker/prometheus/rules/alerts.yml, `for:` capped for the local stack\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return out


@dataclass
class LocalAlertmanager:
    port: int
    receiver_port: int  # where the run's AlertReceiver listens (the webhook target)
    config_file: str
    rules_file: str
    for_cap_s: float
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def to_dict(self) -> dict:
        return asdict(self)


def start_alertmanager(state_dir: Path, timeout_s: float = 30.0) -> LocalAlertmanager:
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not exe:
        raise StackError(
            "the `prometheus-alertmanager` binary was not found on PATH (needed for live alerts)", fix=INSTALL_HINT
        )
    port, rport = free_port(), free_port()
    cfg = state_dir / "alertmanager.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "run",
                    "group_by": ["alertname", "instance"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "run",
                        "webhook_configs": [{"url": f"http://{LOOPBACK}:{rport}/alerts", "send_resolved": True}],
                    }
                ],
            },
            sort_keys=False,
        )
    )
    data = state_dir / "alertmanager-data"
    data.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "alertmanager.log").open("w")
    # --cluster.listen-address= turns the HA gossip off (it would bind 0.0.0.0:9094)
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={cfg}",
            f"--storage.path={data}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    am = LocalAlertmanager(port, rport, str(cfg), "", LOCAL_FOR_S, proc.pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(
                f"alertmanager exited at start (code {proc.returncode}): "
                f"{Path(log.name).read_text(errors='replace')[-800:]}",
                fix=f"see {log.name}",
            )
        try:
            if http_get(f"{am.url}/-/ready", 1.0)[0] == 200:
                return am
        except OSError:
            pass
        time.sleep(0.3)
    stop_alertmanager(am)
    raise StackError(f"alertmanager did not become ready within {timeout_s:.0f} s", fix=f"see {log.name}")


def stop_alertmanager(am: LocalAlertmanager | dict) -> None:
    pid = am.pid if isinstance(am, LocalAlertmanager) else am.get("pid")
    if not pid:
        return
    from harness.stack.procs import stop_groups

    stop_groups([pid], grace_s=2.0, kill_wait_s=2.0)


class AlertReceiver:
    """Alertmanager's webhook target for one run: every notification appended to <run>/alerts.jsonl."""

    def __init__(self, port: int, out: Path):
        self.out = Path(out)
        self.events: list[dict] = []
        self._lock = threading.Lock()
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    recv._add(json.loads(body))
                    self.send_response(200)
                except ValueError:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *a):
                pass

        try:
            self.server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        except OSError as e:
            raise StackError(
                f"cannot listen for alerts on {LOOPBACK}:{port} ({e.strerror or e})",
                fix="another run on this stack is receiving its alerts: wait for it to finish",
            ) from None
        self.thread = threading.Thread(target=self.server.serve_forever, name="harness-alerts", daemon=True)

    def start(self) -> AlertReceiver:
        self.thread.start()
        return self

    def _add(self, payload: dict) -> None:
        now = time.time()
        with self._lock, self.out.open("a") as f:
            for a in payload.get("alerts", []):
                ev = {"received_at": now, **a}
                self.events.append(ev)
                f.write(json.dumps(ev) + "\n")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self) -> list[dict]:
        with self._lock:
            return merge(self.events)


def _epoch(ts: str | None) -> float | None:
    if not ts or ts.startswith("0001-"):  # Alertmanager's zero time: not ended
        return None
    from datetime import datetime

    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", ts.replace("Z", "+00:00"))).timestamp()


def merge(events: list[dict]) -> list[dict]:
    """One entry per alert (fingerprint): name, labels, start/end (epoch s), first notification time, last status."""
    by: dict[str, dict] = {}
    for e in events:
        fp = e.get("fingerprint") or json.dumps(e.get("labels", {}), sort_keys=True)
        a = by.setdefault(
            fp,
            {
                "name": e.get("labels", {}).get("alertname"),
                "labels": e.get("labels", {}),
                "starts_at": _epoch(e.get("startsAt")),
                "ends_at": None,
                "notified_at": e["received_at"],
                "status": e.get("status"),
            },
        )
        a["status"] = e.get("status")
        if e.get("status") == "resolved":
            a["ends_at"] = _epoch(e.get("endsAt"))
    return sorted(by.values(), key=lambda a: (a["starts_at"] or 0, a["name"] or ""))


# ---------- SLO signals ----------

ALERT_SOURCE = "alertmanager webhook (run's receiver)"


def alert_signals(alerts: list[dict], fault_results: list[dict], window_start: float, window_end: float) -> dict:
    """`alerts_fired` (alerts that started in the run window) and `node_down_alert_delay` (per node fault: its
    kill until the first RayNodeDown alert for an instance on that node started; no data if none fired)."""
    fired = [a for a in alerts if a["starts_at"] is not None and window_start <= a["starts_at"] <= window_end + 60]
    out: dict[str, dict] = {"alerts_fired": {"total": float(len(fired))}}
    delays = []
    for f in fault_results:
        if f.get("action") not in ("kill_node", "partition_node") or not f.get("fired_at"):
            continue
        hits = [
            a["starts_at"] - f["fired_at"]
            for a in fired
            if a["name"] == NODE_DOWN_ALERT
            and str(a["labels"].get("instance", "")).split(":")[0] == f.get("node")
            and a["starts_at"] >= f["fired_at"] - 5
        ]
        if not hits:
            return out  # one node fault without its alert: the delay signal has no data (an SLO on it fails)
        delays.append(max(0.0, min(hits)) * 1000.0)
    if delays:
        out["node_down_alert_delay"] = {"max": max(delays), "min": min(delays), "mean": sum(delays) / len(delays)}
    return out


def start_receiver(stack, run_dir: Path) -> AlertReceiver | None:
    """The run's webhook receiver on the port the stack's Alertmanager sends to (None: no local alerting)."""
    if not getattr(stack, "alerting", None):
        return None
    return AlertReceiver(stack.alerting["receiver_port"], Path(run_dir) / "alerts.jsonl").start()


def wait_node_alerts(receiver: AlertReceiver, fault_results: list[dict], timeout_s: float = 30.0) -> list[dict]:
    """Bounded wait until every fired node fault has its RayNodeDown alert (Prometheus `for:` + Alertmanager
    grouping lag a few seconds behind the kill); returns the merged alerts."""
    nodes = {
        f.get("node") for f in fault_results if f.get("action") in ("kill_node", "partition_node") and f.get("fired_at")
    }
    deadline = time.monotonic() + (timeout_s if nodes else 0.0)
    while True:
        got = receiver.alerts()
        seen = {str(a["labels"].get("instance", "")).split(":")[0] for a in got if a["name"] == NODE_DOWN_ALERT}
        if nodes <= seen or time.monotonic() >= deadline:
            return got
        time.sleep(0.5)
