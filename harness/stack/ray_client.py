"""The driver's Ray connection: connect with a deadline, check the cluster's environment, route Ray's logs, disconnect.

Used by the stack, deploy and sweep stages; everything that talks to Ray as a client goes through here.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from pathlib import Path

from harness.errors import DeployError, StackError
from harness.stack.net import LOOPBACK

# ---------- Ray's and vLLM's driver-side log lines go to the run folder, not the user's terminal ----------

_driver_log: Path | None = None
_NOISY = ("ray", "vllm", "transformers")


def set_driver_log(path: Path | None) -> None:
    """Send Ray/Serve/vLLM log lines of this process to `path`; None puts them back on stderr."""
    global _driver_log
    _driver_log = path
    route_ray_logs()


def route_ray_logs() -> None:
    """Swap the terminal handlers of Ray's, Serve's and vLLM's loggers for one on the driver log (and back).

    Called after each point where those libraries configure logging (import ray, serve.start, app build).
    """
    if _driver_log is not None:
        _driver_log.parent.mkdir(parents=True, exist_ok=True)
    want = str(_driver_log.absolute()) if _driver_log is not None else None
    loggers = [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.split(".")[0] in _NOISY and isinstance(logging.root.manager.loggerDict[n], logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            ours = getattr(h, "_harness_routed", False)
            # Ray's own PlainRayHandler is a StreamHandler subclass on stderr; FileHandlers are not terminals.
            terminal = (
                isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)
                and getattr(h, "stream", None) in (sys.stderr, sys.stdout)
            )
            if not (terminal or ours) or (ours and getattr(h, "baseFilename", None) == want):
                continue
            new: logging.Handler = logging.FileHandler(want) if want else logging.StreamHandler(sys.stderr)
            new._harness_routed = want is not None  # type: ignore[attr-defined]
            new.setLevel(h.level)
            new.setFormatter(h.formatter)
            lg.removeHandler(h)
            if ours:
                h.close()
            lg.addHandler(new)


# Ray's core installs a C++ failure-signal handler that turns SIGTERM into an abort (exit -6): our own handler
# must see SIGTERM to record the run as interrupted and stop what we started.
_DRIVER_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
_saved_env: dict[str, str | None] = {}


_default_excepthook = threading.excepthook


def _ray_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """Ray's driver threads (`ray_listen_error_messages`, ...) raise when the cluster goes away under them (a stop,
    Ctrl-C, SIGTERM): their tracebacks go to the driver log, not over the run's own messages on the terminal."""
    name = args.thread.name if args.thread is not None else ""
    if not name.startswith("ray_") or _driver_log is None:
        _default_excepthook(args)
        return
    try:
        with open(_driver_log, "a") as f:
            f.write(f"exception in Ray thread {name}:\n")
            f.write("".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))
    except OSError:
        _default_excepthook(args)


def connect_ray(address: str, env: dict[str, str] | None = None, timeout_s: float | None = None) -> None:
    # Ray reads some of these (loopback cluster mode) at import time, others when it initialises: set them before
    # `import ray`, refresh what an earlier import froze, and restore the env on disconnect (tests share a process).
    want = {**_DRIVER_ENV, **(env or {})}
    _saved_env.update({k: os.environ.get(k) for k in want if k not in _saved_env})
    os.environ.update(want)
    import ray

    threading.excepthook = _ray_thread_excepthook
    route_ray_logs()
    if ray.is_initialized():
        return
    _refresh_ray_config()
    if not address.startswith("ray://"):
        _check_reachable(address)
    _init_with_deadline(ray, address, timeout_s if timeout_s is not None else CONNECT_TIMEOUT_S)


# ray.init retries for minutes on a port that accepts TCP but is not a GCS (or a GCS that never answers).
CONNECT_TIMEOUT_S = float(os.environ.get("HARNESS_RAY_CONNECT_TIMEOUT_S", "30"))


_init_thread: threading.Thread | None = None  # the last ray.init, run in its own thread (a bounded wait)


def init_in_flight() -> bool:
    """A ray.init still under way: an interrupt (or the deadline) came while it connected. Such a process cannot
    exit normally once its cluster is gone: Ray's exit hook waits on the connection, whose core worker retries the
    stopped GCS for 60 s and then aborts the process with exit code 1."""
    return _init_thread is not None and _init_thread.is_alive()


def _init_with_deadline(ray, address: str, timeout_s: float) -> None:
    box: dict = {}

    def init() -> None:
        try:
            ray.init(
                address=address,
                namespace="harness",
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread
            box["error"] = e

    # We init in a thread on purpose (a bounded wait) and handle SIGTERM ourselves: Ray's warning about it is noise.
    logging.getLogger("ray._private.worker").addFilter(_NoSigtermWarning())
    global _init_thread
    t = _init_thread = threading.Thread(target=init, name="ray-init", daemon=True)
    t.start()
    t.join(timeout_s)
    fix = "check --ray-address (host:port of the GCS, or ray://host:10001 for Ray Client) and that the cluster is up"
    if t.is_alive():  # the thread is left behind (daemon); the run stops here with a clear message
        raise StackError(
            f"cannot connect to Ray at {address}: no answer from a Ray GCS within {timeout_s:.0f} s "
            "(something listens on that port, but it does not act like Ray)",
            fix=fix,
        )
    e = box.get("error")
    if e is not None:  # Ray raises ConnectionError, RuntimeError, TimeoutError... depending on version
        raise StackError(
            f"cannot connect to Ray at {address} ({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:300]})",
            fix=fix,
        ) from None


class _NoSigtermWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SIGTERM handler is not set")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a dead address: ray.init retries an unreachable GCS for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or LOOPBACK, int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as e:
        raise StackError(
            f"Ray's GCS at {address} is not reachable ({e.__class__.__name__}: {e})",
            fix="check --ray-address (host:port of the head's GCS, default port 6379) and that the cluster is up",
        ) from None


# Packages whose versions must match between the driver (which pickles the app) and the replicas (which unpickle it).
ENV_PACKAGES = ("ray", "fastapi", "starlette", "pydantic", "uvicorn")


def _fingerprint_probe():
    # A nested function: cloudpickle ships it by value, so the cluster needs no `harness` package to run it.
    def probe(packages: tuple[str, ...]) -> dict:
        import importlib.metadata as md
        import platform
        import sys as _sys

        def ver(d: str) -> str | None:
            try:
                return md.version(d)
            except md.PackageNotFoundError:
                return None

        return {"python": platform.python_version(), "executable": _sys.executable, **{p: ver(p) for p in packages}}

    return probe


def check_cluster_env(local: bool, timeout_s: float = 60.0) -> dict:
    """Compare the cluster's Python environment (seen from a worker) with this driver's; raise when they differ.

    A local stack must run exactly our interpreter; an attached cluster must at least run the same Python and
    package versions, or replicas fail to unpickle the app (e.g. `ModuleNotFoundError: fastapi.telemetry`).
    """
    import ray

    try:
        cluster = ray.get(ray.remote(num_cpus=0)(_fingerprint_probe()).remote(ENV_PACKAGES), timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 — a cluster that cannot run a trivial task will not deploy either
        raise DeployError(
            f"the cluster did not run a trivial task within {timeout_s:.0f} s ({e.__class__.__name__}: {str(e)[:300]})",
            fix="check `ray status` and the cluster's logs",
        ) from None
    mine = _fingerprint_probe()(ENV_PACKAGES)
    keys = ["python", *ENV_PACKAGES] + (["executable"] if local else [])
    diff = [f"  {k}: driver {mine.get(k)} vs cluster {cluster.get(k)}" for k in keys if mine.get(k) != cluster.get(k)]
    if diff:
        raise DeployError(
            "the Ray cluster runs a different Python environment than this harness:\n" + "\n".join(diff),
            fix=(
                "the local stack must be started by the harness's own interpreter: `harness down`, then run "
                f"{sys.executable} -m harness.cli ... (or the venv's bin/harness)"
            )
            if local
            else "deploy over HTTP instead, which needs no matching environment: --dashboard-url http://HEAD:8265 "
            "(with --prometheus-url) in place of --ray-address",
        )
    return cluster


def _refresh_ray_config() -> None:
    """Make an already imported Ray see the current env: loopback mode, signal handler, auth mode and token."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1") != "0"
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = os.environ.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER") == "1"
    try:  # private API; best effort — a fresh CLI process reads the env at import anyway
        # compiled module: Ray's stub for it lacks these names (newer Ray only)
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        pass


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    for k, v in _saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _saved_env.clear()
    _refresh_ray_config()
