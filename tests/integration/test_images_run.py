"""workload.images through a whole `harness run` of the shipped image scenario on the sim (shared stack): the images
reach the engine, which charges ceil(w/28) x ceil(h/28) tokens each and says so in usage; per-modality stats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_image_chat_run(tmp_path, run_on_shared_stack):
    sc = yaml.safe_load((ROOT / "scenarios" / "image-chat.yaml").read_text())
    sc["load"]["stages"] = [{"duration_s": 8, "users": 3, "spawn_rate": 3}]
    path = tmp_path / "image-chat.yaml"
    path.write_text(yaml.safe_dump(sc))
    r, run_dir = run_on_shared_stack(path, tmp_path / "results", "-q")
    assert run_dir is not None and r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    im = summary["images"]
    im_cfg = sc["workload"]["images"]
    per = math.ceil(im_cfg["width"] / 28) * math.ceil(im_cfg["height"] / 28)  # the sim's rule, image_patch_px 28
    assert im["image_tokens_per_image"] == per
    assert im["text_requests"] > 0 and im["image_requests"] > 0
    assert im["text_requests"] + im["image_requests"] == summary["client"]["requests"]
    assert set(summary["modalities"]) == {"text", "image"}
    df = pd.read_parquet(run_dir / "samples.parquet")
    ok = df[df.ok & (df.images > 0)]
    assert (ok.image_tokens == ok.images * per).all()  # every image reached the engine and was charged
    assert ok.images.between(im_cfg["count"], im_cfg["count_max"]).all()
    text = df[df.images == 0]
    assert text.image_tokens.isna().all() and (text.request_bytes < 2000).all()
    # base64 of a 512x512 JPEG: several KB per image, encoded once (the pool): the same sizes recur
    assert (ok.request_bytes > text.request_bytes.max() + ok.images * 4000).all()
    # prompt tokens include the images' (prefilled like text)
    assert (ok.prompt_tokens >= ok.image_tokens + 1).all()
    assert "## Images" in (run_dir / "report.md").read_text()
