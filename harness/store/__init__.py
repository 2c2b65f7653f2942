"""Results store: an index of finished runs that several machines share (SQLAlchemy Core).

SQLite file in the results folder by default (`<results>/harness.db`, no setup); PostgreSQL when given a URL
(`--store postgresql://user@host/db`, or $HARNESS_STORE_URL). One row per run: scenario, status, verdict, key
statistics, versions, labels (the user's plus branch/commit/runner), where its folder and artifacts are, and
its run.json/summary.json documents (so `compare` works from another machine, without significance tests).

The run folder stays the source of truth: a run whose store was unreachable is indexed later by
`harness store sync`, which upserts every finished folder the store lacks. Passwords come from the URL the user
gives or from libpq's environment ($PGPASSWORD, ~/.pgpass); they are never written anywhere: the URL is shown
and recorded only with the password masked, and secret-looking keys are dropped from stored documents.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.paths import checkout_root
from harness.record.health import load_failure

DB_FILE = "harness.db"
MEMORY_URL = "sqlite:///:memory:"  # an index that lives as long as the command (read-only commands)
ENV_URL = "HARNESS_STORE_URL"
MARKER = "store.json"  # in the run folder: was it indexed, where, or why not
STORE_SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 5
_SECRET = re.compile(r"(passw|secret|token|api[_-]?key|credential|auth)", re.I)

# key statistics kept in columns-as-JSON (name -> path in summary.json); canonical units in the names
STATS = {
    "ttft_p50_ms": ("client", "ttft_ms", "p50"),
    "ttft_p95_ms": ("client", "ttft_ms", "p95"),
    "ttft_p99_ms": ("client", "ttft_ms", "p99"),
    "itl_p50_ms": ("client", "itl_ms", "p50"),
    "itl_p95_ms": ("client", "itl_ms", "p95"),
    "itl_p99_ms": ("client", "itl_ms", "p99"),
    "tpot_p95_ms": ("client", "tpot_ms", "p95"),
    "e2e_p50_ms": ("client", "e2e_ms", "p50"),
    "e2e_p95_ms": ("client", "e2e_ms", "p95"),
    "e2e_p99_ms": ("client", "e2e_ms", "p99"),
    "error_rate": ("client", "error_rate"),
    "requests": ("client", "requests"),
    "requests_per_s": ("client", "requests_per_s"),
    "output_tokens_per_s": ("client", "output_tokens_per_s"),
}


class StoreError(HarnessError):
    """The store could not be reached or read."""


def resolve_url(url: str | None, results_dir: Path) -> str | None:
    """--store, else $HARNESS_STORE_URL, else the SQLite file in the results folder; `none` turns the store off."""
    url = url or os.environ.get(ENV_URL) or None
    if url is not None and url.strip().lower() in ("none", "off", ""):
        return None
    if url is None:
        return f"sqlite:///{(Path(results_dir).resolve() / DB_FILE)}"
    if re.match(r"^postgres(ql)?://", url):  # plain libpq URLs use psycopg 3
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_default(url: str | None, results_dir: Path) -> bool:
    return url == f"sqlite:///{(Path(results_dir).resolve() / DB_FILE)}"


_STORE_URL = re.compile(r"^(sqlite(\+\w+)?:///\S+|sqlite(\+\w+)?://|postgres(ql)?(\+\w+)?://[^\s/@]*@?[^\s/]+/\S+)$")


def check_store_url(url: str | None) -> None:
    """--store parsed before anything starts (an unparsable URL is bad input, not a late connection error)."""
    if url is None or url.strip().lower() in ("none", "off", ""):
        return
    if not _STORE_URL.match(url.strip()):
        raise HarnessError(
            f"--store {redact(url)!r}: not a store URL",
            fix="give --store sqlite:///PATH, postgresql://USER@HOST:PORT/DB, or none",
        )


def redact(url: str) -> str:
    """The URL as shown and recorded: password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 — an unparsable URL: show nothing of it
        return "<unparsable store URL>"


def scrub(o: Any) -> Any:
    """Drop values under secret-looking keys (paths to a secret are kept: they are not the secret)."""
    if isinstance(o, dict):
        return {
            k: (
                "<redacted>"
                if _SECRET.search(str(k))
                and not str(k).lower().endswith(("_path", "_file", "mode"))
                and isinstance(v, str)
                else scrub(v)
            )
            for k, v in o.items()
        }
    if isinstance(o, list):
        return [scrub(v) for v in o]
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    return o


def _get(d: Any, path: tuple) -> float | None:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    if d is None or isinstance(d, bool) or not isinstance(d, (int, float)):
        return None
    return None if isinstance(d, float) and not math.isfinite(d) else float(d)


def origin() -> dict[str, str]:
    """Where this run comes from: branch, commit, runner (CI variables first, else git and the host name)."""
    import socket
    import subprocess

    env = os.environ
    out: dict[str, str] = {}
    branch = (
        env.get("GITHUB_HEAD_REF")
        or env.get("GITHUB_REF_NAME")
        or env.get("CI_COMMIT_REF_NAME")
        or env.get("BUILDKITE_BRANCH")
    )
    commit = env.get("GITHUB_SHA") or env.get("CI_COMMIT_SHA") or env.get("BUILDKITE_COMMIT")
    root = checkout_root()  # the harness's own checkout; an installed wheel has no git to ask
    if (not branch or not commit) and root is not None:
        try:
            if not branch:
                r = subprocess.run(
                    ["git", "-C", str(root), "rev-parse", "--abbrev-ref", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                branch = r.stdout.strip() if r.returncode == 0 and r.stdout.strip() != "HEAD" else None
            if not commit:
                r = subprocess.run(
                    ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
                )
                commit = r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            pass
    if branch:
        out["branch"] = branch
    if commit:
        out["commit"] = commit[:12]
    out["runner"] = env.get("HARNESS_RUNNER") or env.get("RUNNER_NAME") or socket.gethostname()
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        out["artifacts"] = (
            f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}"
            f"/actions/runs/{env['GITHUB_RUN_ID']}"
        )
    return out


def entry_from_folder(run_dir: Path) -> dict | None:
    """The store row of a finished run folder; None for a folder that is not (yet) a finished run.
    A malformed record is a RecordError (the listing that called warns and goes on)."""
    from harness.record import read_run

    run_dir = Path(run_dir).resolve()
    if not (run_dir / "run.json").is_file():
        return None
    run, summary = read_run(run_dir)
    if run.get("status") in (None, "running"):
        return None
    env, summ = run.get("environment") or {}, summary or {}
    org = run.get("origin") or {}
    labels = {k: str(v) for k, v in org.items() if k != "artifacts"}
    if "commit" not in labels and (run.get("git_commit") or env.get("git_commit")):
        labels["commit"] = str(run.get("git_commit") or env.get("git_commit"))[:12]
    if "runner" not in labels and (run.get("owner") or {}).get("host"):
        labels["runner"] = str(run["owner"]["host"])
    labels.update({str(k): str(v) for k, v in (run.get("labels") or {}).items()})
    tl = run.get("timeline") or {}
    created = tl.get("created_at") or run.get("started_at") or (run_dir / "run.json").stat().st_mtime
    return {
        "run_id": run.get("run_id") or run_dir.name,
        "scenario": summ.get("scenario") or (run.get("scenario") or {}).get("name") or "?",
        "status": summ.get("status") or run.get("status"),
        "verdict": summ.get("verdict"),
        "created_at": float(created),
        "finished_at": tl.get("finished_at"),
        "host": (run.get("owner") or {}).get("host") or labels.get("runner"),
        "path": str(run_dir),
        "artifacts": org.get("artifacts"),
        "harness_version": env.get("harness") or run.get("harness_version"),
        "git_commit": env.get("git_commit") or run.get("git_commit"),
        "ray_version": env.get("ray"),
        "vllm_version": env.get("vllm"),
        "python_version": env.get("python"),
        "labels": labels,
        "stats": {
            **{k: _get(summ, p) for k, p in STATS.items()},
            "load_failure": load_failure(summ) if summary is not None else None,
        },  # broken: never a baseline
        "slos": [
            {"slo": s.get("slo"), "passed": s.get("passed"), "observed": s.get("observed")}
            for s in summ.get("slos", [])
        ],
        "run_doc": scrub(run),
        "summary_doc": scrub(summary) if summary is not None else None,
    }


@dataclass
class Selector:
    """`latest-pass[:key=value...]`, `latest[:key=value...]`, or a run id."""

    kind: str  # latest-pass | latest | id
    labels: dict[str, str]
    run_id: str | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Selector:
        import difflib

        fix = "e.g. latest-pass, latest-pass:branch=main, latest:branch=main:runner=gpu-1, or a run id"
        head, _, rest = text.strip().partition(":")
        if not head:
            raise HarnessError(f"baseline {text!r}: empty selector", fix=fix)
        if head not in ("latest-pass", "latest"):
            near = difflib.get_close_matches(head.lower(), ["latest-pass", "latest"], n=1, cutoff=0.75)
            if near or re.search(r"\s", text):  # a misspelt keyword must not pass as a run id nobody has
                why = f"did you mean {near[0]!r}?" if near else "a run id has no spaces"
                raise HarnessError(f"baseline {text!r}: not a selector nor a run id ({why})", fix=fix)
            return cls("id", {}, run_id=text, text=text)
        labels = {}
        for part in filter(None, re.split(r"[:,]", rest)):
            k, eq, v = part.partition("=")
            if not eq or not k.strip():
                raise HarnessError(f"baseline {text!r}: {part!r} is not key=value", fix=fix)
            labels[k.strip()] = v
        return cls(head, labels, text=text)


class Store:
    def __init__(self, url: str, *, read_only: bool = False):
        """`read_only`: for commands that only read (history, compare): no folder, file or table is created."""
        from sqlalchemy import create_engine

        self.url, self.shown = url, redact(url)
        engine_url = url
        args: dict[str, Any]
        if url.startswith("sqlite"):
            path = sqlite_path(url)
            if path is not None and read_only:
                if not path.is_file():
                    raise StoreError(f"results store {self.shown}: no such file", fix="check --store's path")
                engine_url, args = f"sqlite:///file:{path}?mode=ro&uri=true", {"uri": True}
            elif path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                args = {"timeout": 30}  # runs finishing at once wait for the writer lock
            else:
                args = {}
        else:
            args = {"connect_timeout": CONNECT_TIMEOUT_S}
        self.read_only = read_only
        try:
            self.engine = create_engine(engine_url, connect_args=args, pool_pre_ping=True)
        except Exception as e:  # noqa: BLE001 — bad URL or missing driver
            raise StoreError(
                f"results store {self.shown}: {e.__class__.__name__}: {_msg(e, url)}",
                fix="give --store sqlite:///PATH or postgresql://USER@HOST:PORT/DB (password via $PGPASSWORD)",
            ) from None
        from harness.store import tables

        self.t = tables
        self._ready = False

    def _schema(self) -> None:
        if not self._ready and not self.read_only:
            try:
                self.t.metadata.create_all(self.engine)  # idempotent (checkfirst)
            except Exception:  # noqa: BLE001 — two machines creating the tables at once: the other one won
                time.sleep(0.5)
                self.t.metadata.create_all(self.engine)
            self._ready = True

    def _do(self, what: str, fn):
        try:
            self._schema()
            return fn()
        except HarnessError:
            raise
        except Exception as e:  # noqa: BLE001 — unreachable, auth, locked: one clear error, password masked
            raise StoreError(
                f"results store {self.shown} unreachable while {what}: {e.__class__.__name__}: {_msg(e, self.url)}",
                fix="check the URL/server, or run without it (--store none); `harness store sync` indexes later",
            ) from None

    # ---- writing ----
    def put(self, entries: Iterable[dict]) -> int:
        entries = [e for e in entries if e]

        def go():
            from sqlalchemy import delete, insert

            now = time.time()
            with self.engine.begin() as c:
                for e in entries:
                    c.execute(delete(self.t.labels).where(self.t.labels.c.run_id == e["run_id"]))
                    c.execute(delete(self.t.runs).where(self.t.runs.c.run_id == e["run_id"]))
                    c.execute(insert(self.t.runs).values(**e, indexed_at=now, schema_version=STORE_SCHEMA_VERSION))
                    if e["labels"]:
                        c.execute(
                            insert(self.t.labels),
                            [{"run_id": e["run_id"], "key": k, "value": v} for k, v in e["labels"].items()],
                        )
            return len(entries)

        return self._do("writing", go)

    # ---- reading ----
    def run_ids(self) -> set[str]:
        from sqlalchemy import select

        def go():
            with self.engine.connect() as c:
                return {r[0] for r in c.execute(select(self.t.runs.c.run_id))}

        return self._do("reading", go)

    def query(
        self,
        scenario: str | None = None,
        labels: dict[str, str] | None = None,
        verdict: str | None = None,
        newest_first: bool = False,
        limit: int = 1000,
        docs: bool = False,
    ) -> list[dict]:
        """Runs oldest first (or newest first), filtered by scenario, verdict and label values (all must match)."""
        from sqlalchemy import and_, select

        r = self.t.runs
        cols = [c for c in r.c if docs or c.name not in ("run_doc", "summary_doc")]

        def go():
            q = select(*cols)
            if scenario:
                q = q.where(r.c.scenario == scenario)
            if verdict:
                q = q.where(r.c.verdict == verdict)
            for k, v in (labels or {}).items():
                lt = self.t.labels.alias()
                q = q.where(r.c.run_id.in_(select(lt.c.run_id).where(and_(lt.c.key == k, lt.c.value == v))))
            q = q.order_by(r.c.created_at.desc() if newest_first else r.c.created_at.asc()).limit(limit)
            with self.engine.connect() as c:
                return [dict(row._mapping) for row in c.execute(q)]

        return self._do("reading", go)

    def get(self, run_id: str) -> dict | None:
        from sqlalchemy import select

        def go():
            with self.engine.connect() as c:
                row = c.execute(select(self.t.runs).where(self.t.runs.c.run_id == run_id)).first()
                return dict(row._mapping) if row else None

        return self._do("reading", go)

    def find(self, sel: Selector, scenario: str | None) -> dict | None:
        if sel.kind == "id":
            return self.get(sel.run_id or "")
        rows = self.query(
            scenario,
            sel.labels,
            verdict="pass" if sel.kind == "latest-pass" else None,
            newest_first=True,
            limit=1,
            docs=True,
        )
        return rows[0] if rows else None

    def close(self) -> None:
        self.engine.dispose()


def _msg(e: Exception, url: str) -> str:
    """An exception's first line without the password (drivers may echo the DSN)."""
    text = str(e).splitlines()[0] if str(e) else ""
    try:
        from sqlalchemy.engine import make_url

        pw = make_url(url).password
        if pw:
            text = text.replace(str(pw), "***")
    except Exception:  # noqa: BLE001
        pass
    return text[:400]


def open_store(url: str | None, results_dir: Path) -> Store | None:
    u = resolve_url(url, results_dir)
    return Store(u) if u else None


def open_read_only(url: str | None, results_dir: Path) -> tuple[Store | None, list[str]]:
    """(store, skipped folders) for a command that writes nothing (history, compare). The default store indexes
    RESULTS_DIR's folders, so those are read into an index in memory (no harness.db, no markers written); a
    given store is opened read-only. None: the store is off, or the default one has no folder to index."""
    u = resolve_url(url, results_dir)
    if u is None:
        return None, []
    if not is_default(u, results_dir):
        return Store(u, read_only=True), []
    if not Path(results_dir).is_dir():
        return None, []
    mem = Store(MEMORY_URL)
    mem.shown = redact(u)
    db = Path(results_dir) / DB_FILE
    if db.is_file():  # what it holds (e.g. runs whose folders were moved away), then the folders it lacks
        _copy_sqlite(db, mem)
    return mem, sync(results_dir, mem, mark=False)["skipped_bad"]


def _copy_sqlite(db: Path, mem: Store) -> None:
    import sqlite3

    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            raw = mem.engine.raw_connection()  # the in-memory database lives on this (pooled) connection
            assert isinstance(raw.driver_connection, sqlite3.Connection)
            src.backup(raw.driver_connection)
            raw.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        raise StoreError(f"results store {db}: cannot read: {e}", fix="delete it (run folders are the truth)") from None


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:///PATH URL; None for an in-memory database."""
    path = url.split("///", 1)[1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


# ---------- indexing a finished run (pipeline) and catching up (`harness store sync`) ----------


def _mark(run_dir: Path, shown: str, ok: bool, error: str | None) -> None:
    from harness.record.store import write_json

    try:
        write_json(run_dir / MARKER, {"store": shown, "indexed": ok, "at": time.time(), "error": error})
    except OSError:
        pass


def index_run(run_dir: Path, url: str | None) -> dict:
    """Index one finished run; never raises. {"store", "indexed", "error"} (the store URL password-masked)."""
    if url is None:
        return {"store": None, "indexed": False, "error": "store turned off (--store none)"}
    shown = redact(url)
    try:
        e = entry_from_folder(run_dir)
        if e is None:
            return {"store": shown, "indexed": False, "error": "the run folder has no finished record"}
        s = Store(url)
        try:
            s.put([e])
        finally:
            s.close()
    except HarnessError as e:
        _mark(run_dir, shown, False, e.message)
        return {"store": shown, "indexed": False, "error": e.message}
    except Exception as e:  # noqa: BLE001 — e.g. a missing driver: the run itself is complete and must stay so
        msg = f"{e.__class__.__name__}: {_msg(e, url)}"
        _mark(run_dir, shown, False, msg)
        return {"store": shown, "indexed": False, "error": msg}
    _mark(run_dir, shown, True, None)
    return {"store": shown, "indexed": True, "error": None}


def sync(results_dir: Path, store: Store, *, mark: bool = True) -> dict:
    """Upsert every finished run folder under results_dir that the store lacks (or whose marker says not indexed).
    A folder whose record is malformed is skipped and listed in `skipped_bad` as "folder: what is wrong";
    `mark=False` writes nothing into the folders (an in-memory index for a read-only command)."""
    from harness.record import RecordError

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise HarnessError(
            f"{results_dir}: no such folder", fix="pass --results-dir where `harness run` wrote its runs"
        )
    have = store.run_ids()
    added, skipped, bad = [], 0, []
    for d in sorted(p for p in results_dir.iterdir() if (p / "run.json").is_file()):
        marker = _marker(d)
        if d.name in have and marker.get("indexed", True):
            continue
        try:
            e = entry_from_folder(d)
        except RecordError as x:
            bad.append(x.message)
            continue
        if e is None:
            skipped += 1
            continue
        if e["run_id"] in have and marker.get("indexed", True):
            continue
        store.put([e])
        if mark:
            _mark(d, store.shown, True, None)
        added.append(e["run_id"])
    return {
        "store": store.shown,
        "added": added,
        "skipped_unfinished": skipped,
        "skipped_bad": bad,
        "already": len(have),
    }


def _marker(d: Path) -> dict:
    try:
        m = json.loads((d / MARKER).read_text()) if (d / MARKER).exists() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return m if isinstance(m, dict) else {}
