"""Where the harness's own files are: a source checkout, or the package data of an installed wheel.

A wheel carries the shipped scenarios, datasets and docker stack under `harness/_data/` (pyproject maps them
there); a checkout (editable install, or `PYTHONPATH=.`) has them at the repository root.
"""

from __future__ import annotations

import errno
import os
import stat
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
        return p if os.path.lexists(p) else None
    cands = [Path.cwd() / p]
    if relative_to is not None:
        cands.append(relative_to / p)
    if asset is not None:
        base = asset_dir(asset)
        cands += [base / p, base.parent / p]  # `sharegpt-mini.jsonl` or `datasets/sharegpt-mini.jsonl`
    for c in cands:
        if os.path.lexists(c):  # a broken link or a loop is found too, so input_file_problem can name it
            try:
                return c.resolve(strict=True)
            except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
                return c.absolute()
    return None


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe): reading it would block until something writes to it",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def input_file_problem(path: str | Path, *, allow_dir: bool = False) -> tuple[str, str] | None:
    """(what is wrong, the fix) for an input file, or None when it is a readable regular file (or, with
    `allow_dir`, a readable directory). Only `stat` is used: a FIFO is refused before anything opens it."""
    p = Path(os.path.expanduser(str(path)))
    want = "a regular file" + (" or a folder" if allow_dir else "")
    try:
        st = os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symlink loop (the link points back at itself)", f"ls -l {p}; point the link at a real file"
        if e.errno == errno.ENOENT and os.path.islink(p):
            return f"is a broken symlink (to {os.readlink(p)})", "point the link at an existing file, or fix the path"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            text = str(path)
            where = " (`~` is expanded only at the start of a path)" if "~" in text[1:] and text[0] != "~" else ""
            return f"not found{where}", "give an absolute path, or one relative to the current directory"
        return f"cannot be read ({e.strerror or e})", "check the path and its permissions"
    if stat.S_ISDIR(st.st_mode) and not allow_dir:
        return "is a folder, not a file", f"give the path of a file inside {p}"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        return f"is {kind}, not {want}", f"give the path of {want} (copy the data to a file first)"
    if not os.access(p, os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)):
        return "is not readable", f"check its permissions (ls -l {p})"
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
