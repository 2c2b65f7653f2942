"""URL and address checks for everything a user hands us (scenario `target.url`, --prometheus-url,
--endpoint-url, --ray-address): a malformed one is bad input (exit 2) before anything starts, not a
connection error minutes later."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from harness.errors import HarnessError

_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


def _host_problem(host: str | None) -> str | None:
    if not host:
        return "no host"
    if ":" in host:  # IPv6 literal (urlsplit has stripped the brackets)
        import ipaddress

        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return f"host {host!r} is not a valid IPv6 address"
        return None
    if not _HOST.match(host):
        return f"host {host!r} is not a host name or IP address"
    if re.fullmatch(r"[0-9.]+", host):
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"host {host!r} is not a valid IPv4 address"
    return None


def _port_problem(parts) -> str | None:
    try:
        port = parts.port
    except ValueError:  # not a number, or outside 0-65535
        raw = parts.netloc.rpartition(":")[2]
        return f"port {raw!r} is not a number in 1-65535"
    if port == 0:
        return "port 0 is not a port to connect to; use 1-65535"
    return None


def url_problem(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """What is wrong with an http(s) base URL (scheme, host, port, stray characters), or None."""
    if not isinstance(url, str) or not url.strip():
        return "empty URL"
    if url != url.strip() or re.search(r"\s", url):
        return "contains whitespace"
    if "://" not in url:
        if re.match(r"^https?[:/]", url, re.I):
            return "malformed scheme: write http://HOST:PORT or https://HOST:PORT"
        return f"no scheme: write e.g. http://{url}"
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unbalanced IPv6 bracket
        return str(e)
    if parts.scheme.lower() not in schemes:
        return f"scheme {parts.scheme!r} is not one of {', '.join(schemes)}"
    if parts.username or parts.password:
        return "credentials in the URL would be recorded in run.json; pass an API key with target.api_key_env"
    return (
        _host_problem(parts.hostname)
        or _port_problem(parts)
        or ("a base URL takes no ?query or #fragment" if parts.query or parts.fragment else None)
    )


def check_url(url: str | None, what: str, example: str = "http://127.0.0.1:9090") -> None:
    """Raise a bad-input error naming `what` (e.g. --prometheus-url) when the URL is malformed."""
    if url is None:
        return
    why = url_problem(url)
    if why:
        raise HarnessError(f"{what} {url!r}: {why}", fix=f"give scheme, host and port, e.g. {what} {example}")


def ray_address_problem(addr: str) -> str | None:
    """`host:port` (GCS) or `ray://host:port` (Ray Client); `auto` and `local` mean what Ray says."""
    if addr in ("auto", "local"):
        return None
    if re.search(r"\s", addr) or not addr:
        return "empty or contains whitespace"
    if "://" in addr:
        scheme = addr.split("://", 1)[0]
        if scheme != "ray":
            return f"scheme {scheme!r}: use host:port or ray://host:port"
        parts = urlsplit(addr)
    else:
        parts = urlsplit(f"//{addr}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "only host and port belong in a Ray address"
    why = _host_problem(parts.hostname) or _port_problem(parts)
    if why:
        return why
    if parts.port is None:
        return "no port (Ray's GCS is usually 6379, Ray Client 10001)"
    return None


def check_ray_address(addr: str | None) -> None:
    if addr is None:
        return
    why = ray_address_problem(addr)
    if why:
        raise HarnessError(
            f"--ray-address {addr!r}: {why}",
            fix="give host:port of the head's GCS (e.g. 10.0.0.5:6379) or ray://host:10001",
        )
