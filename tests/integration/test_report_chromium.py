"""The picture check: report.html rendered by headless Chromium (Debian's `chromium`) draws its plots."""

import json
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from harness.report import load_data
from harness.report.html import render_html

pytestmark = pytest.mark.integration
REC = Path(__file__).resolve().parent.parent / "fixtures" / "records" / "step-autoscale"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    d = tmp_path_factory.mktemp("html")
    run, summary = json.loads((REC / "run.json").read_text()), json.loads((REC / "summary.json").read_text())
    (d / "report.html").write_text(render_html(run, summary, *load_data(REC)), encoding="utf-8")
    return d


def _chromium(page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = page / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, (page / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)


def test_dom_has_the_svg_plots(page):
    out = _chromium(page, "--dump-dom")
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert dom.count("<svg") >= 12
    counts = [int(n) for n in re.findall(r'data-n="(\d+)"', dom)]
    assert sum(1 for n in counts if n >= 20) >= 8, counts  # paths with many points, not empty frames
    paths = re.findall(r'<path class="series"[^>]* d="([^"]+)"', dom)
    assert max(len(re.findall(r"[LHV]", p)) for p in paths) >= 50


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into raw rows, without third-party libraries."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(png):
        n = int.from_bytes(png[pos:pos + 4], "big")
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big"), data[8], data[9]
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, bpp, b"".join(rows)


def test_screenshot_is_not_blank_and_has_plot_colours(page):
    shot = page / "shot.png"
    out = _chromium(page, f"--screenshot={shot}", "--window-size=1600,2600")
    assert shot.exists() and shot.stat().st_size > 20_000, out.stderr[-2000:]
    w, bpp, px = _png_pixels(shot.read_bytes())
    pixels = {px[i:i + 3] for i in range(0, len(px), bpp * 7)}  # sample every 7th pixel
    assert len(pixels) > 50  # not a blank page
    blue = sum(1 for p in pixels if p[2] > 150 and p[0] < 90 and p[1] < 160)  # the series colour #1f77b4 and kin
    assert blue >= 3
