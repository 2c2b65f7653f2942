"""`serve_apps` as a runtime_env package, for clusters whose image lacks it (or holds another version of it).

The zip is built deterministically (sorted names, fixed timestamps), so its name is a hash of its content: the
cluster keeps one copy per version of the apps, and a run uploads only what the cluster does not have yet.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: the same bytes on every machine


def _apps_root() -> Path:
    import serve_apps

    return Path(serve_apps.__file__).resolve().parent


def serve_apps_zip(root: Path | None = None) -> bytes:
    root = root or _apps_root()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or "__pycache__" in p.parts or p.suffix in (".pyc", ".pyo"):
                continue
            info = zipfile.ZipInfo(f"{root.name}/{p.relative_to(root).as_posix()}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    return buf.getvalue()


def package_uri(data: bytes) -> str:
    # Ray's own naming for uploaded working dirs (what `ray job submit` uses): gcs://_ray_pkg_<hex>.zip
    return f"gcs://_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip"
