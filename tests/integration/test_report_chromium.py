"""The picture check: report.html, compare.html and history.html opened in headless Chromium (Debian's `chromium`)
as a user would: every Plotly chart is drawn, with its traces, without console messages, and the page is not blank.
"""

import json
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from harness.compare import compare_runs
from harness.compare.history import history
from harness.report import load_data
from harness.report.compare_html import render_compare_html, render_history_html
from harness.report.html import render_html

pytestmark = pytest.mark.integration
REC = Path(__file__).resolve().parent.parent / "fixtures" / "records" / "step-autoscale"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


PAGES = ("report", "capped", "compare", "history")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing but CI=true: .ci/setup installs it")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    d = tmp_path_factory.mktemp("html")
    run, summary = json.loads((REC / "run.json").read_text()), json.loads((REC / "summary.json").read_text())
    (d / "report.html").write_text(render_html(run, summary, *load_data(REC)), encoding="utf-8")
    cap = REC.parent / "autoscale-capped"
    run, summary = json.loads((cap / "run.json").read_text()), json.loads((cap / "summary.json").read_text())
    (d / "capped.html").write_text(render_html(run, summary, *load_data(cap)), encoding="utf-8")
    cmp = REC.parent / "compare"
    result = compare_runs([cmp / "ray-2.59a", cmp / "ray-2.59b", cmp / "ray-2.60-slow"], resamples=200)
    (d / "compare.html").write_text(render_compare_html(result), encoding="utf-8")
    res = d / "results"
    for i, name in enumerate(["ray-2.59a", "ray-2.59b", "ray-2.59a", "ray-2.60-slow"]):
        shutil.copytree(cmp / name, res / f"run{i}")
        r = json.loads((res / f"run{i}" / "run.json").read_text())
        r["run_id"], r["timeline"]["created_at"] = f"fixture-chat-run{i}", 1_780_000_000 + 86_400 * i
        (res / f"run{i}" / "run.json").write_text(json.dumps(r))
    (d / "history.html").write_text(render_history_html(history(res)), encoding="utf-8")
    return d


_opened: dict[str, tuple[subprocess.CompletedProcess, Path]] = {}


def _chromium(page: Path, name: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Open the page once: DOM after load (stdout), console messages (stderr), a screenshot."""
    if name not in _opened:
        profile, shot = page / f"profile-{name}", page / f"{name}.png"
        profile.mkdir(exist_ok=True)
        out = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                f"--screenshot={shot}",
                "--window-size=1400,2000",
                (page / f"{name}.html").as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        _opened[name] = (out, shot)
    return _opened[name]


@pytest.mark.parametrize("name", PAGES)
def test_every_chart_renders_with_traces_and_no_console_messages(page, name):
    out, _ = _chromium(page, name)
    assert out.returncode == 0, out.stderr[-2000:]
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no errors, warnings or stray logs from plotly.js or our page
    plots = re.split(r'<div id="[^"]+" class="plotly-graph-div', out.stdout)[1:]
    assert len(plots) >= {"report": 12, "capped": 12, "compare": 4, "history": 5}[name]
    for p in plots:
        head = p[:300]
        assert "js-plotly-plot" in head, head  # Plotly drew into this div
        assert 'class="main-svg"' in p and re.search(r'<g class="trace scatter', p)
    lines = [len(x) for p in plots for x in re.findall(r'class="js-line" d="([^"]+)"', p)]
    if name in ("report", "capped"):
        assert sum(1 for n in lines if n > 400) >= 6, lines  # long lines: real series, not empty frames
        dots = max(len(re.findall(r'class="point"', p)) for p in plots)
        assert dots >= 200  # the per-request scatter


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into raw rows, without third-party libraries."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(png):
        n = int.from_bytes(png[pos : pos + 4], "big")
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
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
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
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


@pytest.mark.parametrize("name", PAGES)
def test_screenshot_is_not_blank_and_has_plot_colours(page, name):
    out, shot = _chromium(page, name)
    assert shot.exists() and shot.stat().st_size > 20_000, out.stderr[-2000:]
    w, bpp, px = _png_pixels(shot.read_bytes())
    pixels = {px[i : i + 3] for i in range(0, len(px), bpp * 7)}  # sample every 7th pixel
    assert len(pixels) > 50  # not a blank page
    coloured = sum(1 for p in pixels if max(p) - min(p) > 80)  # series colours, not just text and grid greys
    assert coloured >= 20
    if os.environ.get("HARNESS_SCREENSHOT_DIR"):  # to look at them
        shutil.copy(shot, Path(os.environ["HARNESS_SCREENSHOT_DIR"]) / shot.name)
