"""Small network helpers for the local stack (loopback only)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port(avoid: range | None = range(10002, 20000)) -> int:
    """A free TCP port on loopback, outside Ray's default worker port range."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if avoid is None or port not in avoid:
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_get(url: str, timeout_s: float = 5.0, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_post_json(url: str, body: Any, timeout_s: float = 10.0, headers: dict | None = None) -> tuple[int, bytes]:
    """POST a JSON body; (status, response body), HTTP errors included."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_json(url: str, timeout_s: float = 5.0, headers: dict | None = None) -> Any:
    status, body = http_get(url, timeout_s, headers)
    if status != 200:
        raise urllib.error.HTTPError(url, status, body[:200].decode(errors="replace"), Message(), None)
    return json.loads(body)


def wait_until(pred: Callable[[], Any], timeout_s: float, interval_s: float = 0.5) -> Any:
    """Poll `pred` until it returns a truthy value or the time runs out (then returns the last value)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            last = pred()
        except Exception as e:  # unreachable endpoints raise; keep polling until the deadline
            last = None
            _ = e
        if last:
            return last
        if time.monotonic() >= deadline:
            return last
        time.sleep(interval_s)
