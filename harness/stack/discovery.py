"""Ray's file-based service discovery (`prom_metrics_service_discovery.json`): read it and judge it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

# Ray rewrites the file every ~5 s while the cluster lives; older than this means nobody is writing it.
STALE_AFTER_S = 30.0

TROUBLESHOOTING = (
    "wait 10-30 s after Ray starts (Ray writes the file ~7 s after start and every 5 s after); "
    "check that Prometheus sees Ray's temp dir (the volume mount, e.g. /tmp/ray); "
    "check that Ray was started with --metrics-export-port"
)


@dataclass
class DiscoveryState:
    path: str
    exists: bool
    targets: list[str] = field(default_factory=list)
    age_s: float | None = None
    error: str | None = None

    @property
    def stale(self) -> bool:
        return self.age_s is not None and self.age_s > STALE_AFTER_S

    @property
    def ok(self) -> bool:
        return self.exists and not self.error and bool(self.targets) and not self.stale


def read_discovery(path: str | Path) -> DiscoveryState:
    p = Path(path)
    if not p.exists():
        return DiscoveryState(str(p), False, error=f"{p} does not exist")
    try:
        age = time.time() - p.stat().st_mtime
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return DiscoveryState(str(p), True, error=f"cannot parse {p}: {e}")
    if not isinstance(data, list):
        return DiscoveryState(str(p), True, age_s=age, error=f"{p}: expected a JSON list of target groups")
    targets = [t for group in data if isinstance(group, dict) for t in group.get("targets", [])]
    return DiscoveryState(str(p), True, targets=targets, age_s=age)


def wait_for_discovery(path: str | Path, timeout_s: float = 30.0, min_targets: int = 1) -> DiscoveryState:
    deadline = time.monotonic() + timeout_s
    state = read_discovery(path)
    while time.monotonic() < deadline and not (state.ok and len(state.targets) >= min_targets):
        time.sleep(0.5)
        state = read_discovery(path)
    return state
