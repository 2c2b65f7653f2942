"""An attached Ray cluster over HTTP: its dashboard's REST APIs, no Ray Client, no matching environment needed.

Ray Client pins the driver to the cluster's Python, Ray and pickled libraries; every real cluster (an image, a
KubeRay RayService) differs from the machine a release job runs on. These routes need none of that (Ray 2.60):
  GET  /api/version                          Ray version, session name
  GET  /api/v0/nodes, /api/v0/actors         State API (nodes with resources; actors with class, state, node)
  GET  /api/serve/applications/              every app's status and deployed config
  PUT  /api/serve/applications/              declarative: the body is the *whole* set of apps
  PUT  /api/packages/gcs/<name>.zip          a runtime_env package (what `ray job submit` uploads)
  POST /api/jobs/                            a short entrypoint run in the cluster's own environment
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from harness.errors import StackError

NOT_A_DASHBOARD_FIX = (
    "pass the Ray dashboard's URL, e.g. --dashboard-url http://HEAD:8265 (the port of `ray start --dashboard-port`)"
)


class DashboardError(StackError):
    """The dashboard answered, but not what the harness asked for (the API's own message is kept)."""


@dataclass
class Dashboard:
    url: str
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        u = urlparse(self.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise StackError(f"--dashboard-url {self.url!r} is not an http(s) URL", fix=NOT_A_DASHBOARD_FIX)
        self.url = self.url.rstrip("/")

    # ---------- transport ----------

    def request(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/octet-stream" if raw is not None else "application/json"}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ValueError) as e:
            raise StackError(
                f"the Ray dashboard at {self.url} is not reachable ({e.__class__.__name__}: {e})",
                fix=NOT_A_DASHBOARD_FIX,
            ) from None

    def get_json(self, path: str, *, timeout_s: float | None = None) -> Any:
        status, body = self.request("GET", path, timeout_s=timeout_s)
        if status != 200:
            raise DashboardError(
                f"GET {self.url}{path} answered HTTP {status}: {_text(body)}",
                fix="check that --dashboard-url is a Ray dashboard (Ray >= 2.9) and that the cluster is healthy",
            )
        try:
            return json.loads(body)
        except ValueError:
            raise DashboardError(
                f"GET {self.url}{path} did not answer JSON: {_text(body)}", fix=NOT_A_DASHBOARD_FIX
            ) from None

    # ---------- cluster facts ----------

    def version(self) -> dict[str, Any]:
        """{"ray_version", "ray_commit", "session_name", ...}; a non-Ray server fails here, within the timeout."""
        v = self.get_json("/api/version", timeout_s=min(self.timeout_s, 8.0))
        if not isinstance(v, dict) or "ray_version" not in v:
            raise StackError(
                f"{self.url} answered /api/version without a Ray version: not a Ray dashboard", fix=NOT_A_DASHBOARD_FIX
            )
        return v

    def _state(self, resource: str, filters: dict[str, str] | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        q = f"/api/v0/{resource}?limit={limit}&detail=1" + "".join(
            f"&filter_keys={k}&filter_predicates=%3D&filter_values={v}" for k, v in (filters or {}).items()
        )
        out = self.get_json(q)
        result = (out.get("data") or {}).get("result") if isinstance(out, dict) else None
        if isinstance(result, dict):  # Ray 2.60: {"data": {"result": {"result": [...], "total": N}}}
            result = result.get("result")
        if not isinstance(result, list):
            raise DashboardError(f"State API {resource}: unexpected answer {str(out)[:200]}", fix=NOT_A_DASHBOARD_FIX)
        return result

    def nodes(self) -> list[dict[str, Any]]:
        return self._state("nodes")

    def actors(self, **filters: str) -> list[dict[str, Any]]:
        return self._state("actors", filters)

    # ---------- Serve ----------

    def serve_details(self) -> dict[str, Any]:
        d = self.get_json("/api/serve/applications/")
        return d if isinstance(d, dict) else {}

    def put_serve_config(self, config: dict[str, Any]) -> None:
        status, body = self.request("PUT", "/api/serve/applications/", config, timeout_s=60.0)
        if status != 200:
            raise DashboardError(
                f"the cluster refused the Serve config (HTTP {status}): {_text(body, 2000)}",
                fix=_refusal_fix(body),
            )

    def shutdown_serve(self) -> None:
        status, body = self.request("DELETE", "/api/serve/applications/", timeout_s=60.0)
        if status != 200:
            raise DashboardError(f"shutting Serve down failed (HTTP {status}): {_text(body)}", fix=NOT_A_DASHBOARD_FIX)

    # ---------- runtime_env packages ----------

    def has_package(self, uri: str) -> bool:
        status, _ = self.request("GET", f"/api/packages/{_package_path(uri)}")
        return status == 200

    def upload_package(self, uri: str, data: bytes) -> None:
        status, body = self.request("PUT", f"/api/packages/{_package_path(uri)}", raw=data, timeout_s=120.0)
        if status != 200:
            raise DashboardError(
                f"uploading {uri} failed (HTTP {status}): {_text(body)}",
                fix="check the dashboard's logs (dashboard.log) and its free GCS memory",
            )

    # ---------- jobs: a short script in the cluster's own environment ----------

    def run_python(self, script: str, *, timeout_s: float = 60.0, runtime_env: dict | None = None) -> str:
        """Run a Python script as a job in the cluster's own environment; wait until it ends, return its logs
        (a failed job raises with its logs). The script travels base64-encoded: no shell quoting to get wrong."""
        code = base64.b64encode(script.encode()).decode()
        entrypoint = f"python -c \"import base64; exec(base64.b64decode('{code}'))\""
        body: dict[str, Any] = {"entrypoint": entrypoint}
        if runtime_env:
            body["runtime_env"] = runtime_env
        status, out = self.request("POST", "/api/jobs/", body)
        if status != 200:
            raise DashboardError(f"job submission refused (HTTP {status}): {_text(out)}", fix=NOT_A_DASHBOARD_FIX)
        job_id = json.loads(out)["submission_id"]
        deadline = time.monotonic() + timeout_s
        state = "PENDING"
        while time.monotonic() < deadline:
            state = str(self.get_json(f"/api/jobs/{job_id}").get("status"))
            if state in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(0.3)
        logs = str(self.get_json(f"/api/jobs/{job_id}/logs").get("logs", ""))
        if state != "SUCCEEDED":
            raise DashboardError(
                f"cluster job {job_id} ended {state}: {logs[-1500:]}", fix="see the job's logs in the Ray dashboard"
            )
        return logs


def _package_path(uri: str) -> str:
    protocol, _, name = uri.partition("://")
    return f"{protocol}/{name}"


def _text(body: bytes, limit: int = 300) -> str:
    return body[:limit].decode(errors="replace").strip()


def _refusal_fix(body: bytes) -> str:
    text = body.decode(errors="replace")
    if "imperative" in text.lower() or "api_type" in text.lower():
        return (
            "the cluster's Serve apps were deployed from Python (serve.run), which a config deploy would replace; "
            "deploy them from a config too (serve deploy), or run the harness on a cluster of its own"
        )
    return "read the cluster's message above; the import path and args must exist in the cluster's image"
