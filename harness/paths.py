"""Where the harness's own files are: a source checkout, or the package data of an installed wheel.

A wheel carries the shipped scenarios, datasets and docker stack under `harness/_data/` (pyproject maps them
there); a checkout (editable install, or `PYTHONPATH=.`) has them at the repository root.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parent


def checkout_root() -> Path | None:
    """The repository root when running from a source checkout (with its pyproject.toml), else None."""
    return _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "scenarios").is_dir() else None


def import_root() -> Path:
    """The folder that holds the `harness` and `serve_apps` packages (what a child process needs on sys.path)."""
    return _CHECKOUT


def asset_dir(name: str) -> Path:
    """`scenarios`, `datasets` or `docker`: the checkout's folder, else the installed package data."""
    root = checkout_root()
    if root is not None:
        return root / name
    return PACKAGE_DIR / "_data" / name


def resolve_input(path: str | Path, *, relative_to: Path | None = None, asset: str | None = None) -> Path | None:
    """An input file named in a scenario or on the command line, as an absolute path, or None when not found.

    Relative paths are tried against the current directory, then the scenario file's folder, then the shipped
    asset folder (so `datasets/sharegpt-mini.jsonl` works from anywhere).
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    cands = [Path.cwd() / p]
    if relative_to is not None:
        cands.append(relative_to / p)
    if asset is not None:
        base = asset_dir(asset)
        cands += [base / p, base.parent / p]  # `sharegpt-mini.jsonl` or `datasets/sharegpt-mini.jsonl`
    for c in cands:
        if c.exists():
            return c.resolve()
    return None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Env for processes the harness starts: this interpreter's bin dir first on PATH (anything they spawn by name
    comes from the same environment)."""
    env = {**os.environ, **(extra or {})}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir)])
    return env
