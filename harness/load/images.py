"""Image inputs (`workload.images`): the pool of distinct images, each encoded once as a data URL before the load.

Synthetic images are seeded (the same seed and settings give the same bytes) and made with Pillow: a gradient
with a few random rectangles, so that JPEG/PNG sizes are realistic rather than those of a flat colour. A folder or
a JSONL dataset of paths sends local files as they are (their bytes, their MIME type); every file is opened with
Pillow first, and one that is not an image is a bad input (exit 2), as is a folder with no images.

The locustfile picks each request's images from the pool (`pick_images`, seeded per request) and sends them as
OpenAI `image_url` content parts after the text part.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:  # the locustfile imports this module: keep pydantic out of its import
    import pandas as pd

    from harness.scenario import Images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
MAX_LOCAL_IMAGES = 10_000


def _pil():
    try:
        from PIL import Image, ImageDraw
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise HarnessError(
            "workload.images needs Pillow, which is not installed", fix="pip install 'Pillow>=10'"
        ) from None
    return Image, ImageDraw


def synthetic_image(width: int, height: int, fmt: str, quality: int, seed: str) -> bytes:
    """One seeded image: a two-colour gradient with random rectangles, encoded as png or jpeg."""
    Image, ImageDraw = _pil()
    rng = random.Random(seed)
    a = [rng.randrange(256) for _ in range(3)]
    b = [rng.randrange(256) for _ in range(3)]
    # a horizontal gradient row, stretched: cheap even for large sizes
    row = Image.new("RGB", (max(width, 1), 1))
    row.putdata([tuple(int(a[c] + (b[c] - a[c]) * x / max(width - 1, 1)) for c in range(3)) for x in range(width)])
    img = row.resize((width, height))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = (
            min(width - 1, x0 + rng.randrange(1, max(2, width // 3))),
            min(height - 1, y0 + rng.randrange(1, max(2, height // 3))),
        )
        draw.rectangle([x0, y0, x1, y1], fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(raw: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _local_image(path: Path, where: str) -> dict[str, Any]:
    Image, _ = _pil()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HarnessError(f"{where}: {path}: cannot read ({e.strerror or e})", fix="check the path") from None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
            w, h, fmt = im.width, im.height, im.format or ""
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for a file that is not an image
        raise HarnessError(
            f"{where}: {path}: not an image Pillow can read",
            fix="remove it, or point at png/jpeg/webp/gif/bmp files",
        ) from None
    mime = _MIME.get(fmt.upper())
    if mime is None:
        raise HarnessError(f"{where}: {path}: image format {fmt or '?'} cannot be sent", fix="use png or jpeg files")
    return {"url": data_url(raw, mime), "width": w, "height": h, "bytes": len(raw), "source": str(path)}


def _folder_paths(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise HarnessError(f"workload.images.folder: {folder}: no such folder", fix="point it at a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise HarnessError(
            f"workload.images.folder: {folder}: no image files there ({', '.join(IMAGE_SUFFIXES)})",
            fix="put images in it, or use synthetic images (width, height)",
        )
    return paths[:MAX_LOCAL_IMAGES]


def _dataset_paths(path: Path) -> list[Path]:
    if not path.is_file():
        raise HarnessError(f"workload.images.dataset: {path}: no such file", fix="point it at a JSONL file")
    out: list[Path] = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise HarnessError(
                f"workload.images.dataset: {path}: line {i} is not JSON", fix="one object per line"
            ) from None
        items = obj.get("images") if isinstance(obj, dict) else None
        if items is None and isinstance(obj, dict) and "image" in obj:
            items = [obj["image"]]
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items) or not items:
            raise HarnessError(
                f"workload.images.dataset: {path}: line {i} has no `image` (a path) or `images` (a list of paths)",
                fix='e.g. {"image": "cat.png"}',
            )
        for x in items:
            p = Path(x).expanduser()
            out.append(p if p.is_absolute() else path.parent / p)
    if not out:
        raise HarnessError(f"workload.images.dataset: {path}: no image paths in it", fix="add lines with `image`")
    return out[:MAX_LOCAL_IMAGES]


def _resolve(p: str, base: Path | None) -> Path:
    q = Path(p).expanduser()
    if q.is_absolute() or base is None or (Path.cwd() / q).exists():
        return q.absolute()
    return base / q


def build_pool(images: Images, seed: int, base_dir: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every distinct image, encoded once: [{url, width, height, bytes, source}], and what run.json records."""
    if images.folder is not None or images.dataset is not None:
        if images.folder is not None:
            where, paths = "workload.images.folder", _folder_paths(_resolve(images.folder, base_dir))
        else:
            where, paths = "workload.images.dataset", _dataset_paths(_resolve(str(images.dataset), base_dir))
        pool = [_local_image(p, where) for p in paths]
        source = "folder" if images.folder is not None else "dataset"
    else:
        rng = random.Random(f"harness-images:{seed}")
        choices = images.size_choices()
        pool = []
        for i in range(images.distinct):
            w, h, _ = rng.choices(choices, [c[2] for c in choices])[0]
            raw = synthetic_image(w, h, images.format, images.quality, f"{seed}:{i}")
            mime = "image/jpeg" if images.format == "jpeg" else "image/png"
            pool.append({"url": data_url(raw, mime), "width": w, "height": h, "bytes": len(raw), "source": "synthetic"})
        source = "synthetic"
    info = {
        "source": source,
        "distinct": len(pool),
        "bytes_mean": round(sum(p["bytes"] for p in pool) / len(pool), 1),
        "sizes": sorted({f"{p['width']}x{p['height']}" for p in pool}),
        "count": images.count,
        "count_max": images.count_max,
        "fraction": images.fraction,
    }
    return pool, info


def pick_images(rng: random.Random, pool: list[str], images: dict[str, Any]) -> list[str]:
    """The data URLs one request carries ([] for a text-only request): seeded by the request's own rng."""
    if not pool or (images.get("fraction", 1.0) < 1.0 and rng.random() >= float(images["fraction"])):
        return []
    lo = int(images.get("count") or 1)
    hi = int(images.get("count_max") or lo)
    n = rng.randint(lo, hi) if hi > lo else lo
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


def with_images(messages: list[dict[str, Any]], urls: list[str]) -> list[dict[str, Any]]:
    """The conversation with the images added to its last user message as image_url parts after the text."""
    if not urls:
        return messages
    last = messages[-1]
    parts: list[dict[str, Any]] = [{"type": "text", "text": last["content"]}]
    parts += [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [*messages[:-1], {**last, "content": parts}]


def image_stats(samples: pd.DataFrame) -> dict[str, Any] | None:
    """Per-modality statistics of an image workload (summary.json `images`), over the measured samples; None when
    the run sent no image workload. TTFT by image count counts from the scheduled arrival in open loop."""
    from harness.slo.evaluate import dist_stats, latency_column, measured

    if "images" not in samples or samples["images"].isna().all():
        return None
    df = measured(samples)
    df = df[df["images"].notna()]
    ok = df[df["ok"]]
    ttft_col = latency_column(samples, "ttft")
    img = df["images"].astype(int)
    tok = ok["image_tokens"].dropna().astype(float) if "image_tokens" in ok else None
    n_img = int(img.sum())

    def mean_bytes(mask) -> float | None:
        sel = df.loc[mask, "request_bytes"].dropna()
        return round(float(sel.mean()), 1) if len(sel) else None

    by_count = {}
    for c in sorted(ok["images"].astype(int).unique()):
        d = dist_stats(ok.loc[ok["images"].astype(int) == c, ttft_col])
        if d is not None:
            by_count[str(int(c))] = {
                k: round(v, 3) for k, v in d.items() if k in ("p50", "p95", "p99", "mean", "count")
            }
    n_tok_img = int(ok.loc[ok["images"].astype(int) > 0, "images"].sum()) if len(ok) else 0
    return {
        "text_requests": int((img == 0).sum()),
        "image_requests": int((img > 0).sum()),
        "images_sent": n_img,
        "image_tokens": float(tok.sum()) if tok is not None and len(tok) else None,
        "image_tokens_per_image": round(float(tok.sum()) / n_tok_img, 3)
        if tok is not None and len(tok) and n_tok_img
        else None,
        "request_bytes_mean": {"text": mean_bytes(img == 0), "image": mean_bytes(img > 0)},
        "ttft_ms_by_image_count": by_count,
    }
