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


def check_output(path: Path | None, option: str) -> Path | None:
    """An output file a command will write (--md, --json, --html ...), checked before any work: a verdict must
    never be printed by a command that then cannot write its file. `~` is expanded."""
    from harness.errors import HarnessError

    if path is None:
        return None
    p = Path(os.path.expanduser(str(path)))
    fix = f"give {option} a file path in an existing, writable folder"
    if p.is_dir():
        raise HarnessError(f"{option} {path}: is a folder, not a file", fix=f"{fix}, e.g. {option} {p / 'out'}")
    if p.exists() and not p.is_file():
        raise HarnessError(f"{option} {path}: exists and is not a regular file", fix=fix)
    parent = p.parent
    if not parent.exists():
        raise HarnessError(f"{option} {path}: folder {parent} does not exist", fix=f"mkdir -p {parent}, or {fix}")
    if not parent.is_dir():
        raise HarnessError(f"{option} {path}: {parent} is a file, not a folder", fix=fix)
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise HarnessError(f"{option} {path}: not writable", fix=fix)
    return p
