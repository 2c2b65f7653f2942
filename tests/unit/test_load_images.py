"""workload.images: the image pool (synthetic, folder, dataset), bad inputs, request bodies, the sim's image tokens,
per-modality statistics."""

from __future__ import annotations

import base64
import io
import json
import math
import random

import pandas as pd
import pytest
from PIL import Image

from harness.errors import ScenarioError
from harness.load.images import build_pool, image_stats, pick_images, with_images
from harness.load.prepare import check_inputs
from harness.load.workload import build_body
from harness.scenario import Images, parse_scenario
from serve_apps.sim.app import ApiError, image_size, parse_request


def _decode(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_synthetic_pool_is_seeded_and_sized():
    im = Images(sizes=[{"width": 64, "height": 32}, {"width": 300, "height": 200, "weight": 3}], distinct=12)
    pool, info = build_pool(im, seed=3)
    again, _ = build_pool(im, seed=3)
    other, _ = build_pool(im, seed=4)
    assert [p["url"] for p in pool] == [p["url"] for p in again] and pool[0]["url"] != other[0]["url"]
    assert len({p["url"] for p in pool}) == 12  # distinct images
    for p in pool:
        img = _decode(p["url"])
        assert (img.width, img.height) == (p["width"], p["height"]) and img.format == "JPEG"
        assert p["url"].startswith("data:image/jpeg;base64,") and p["bytes"] > 100
    assert info["distinct"] == 12 and set(info["sizes"]) <= {"64x32", "300x200"}
    png, _ = build_pool(Images(width=40, height=30, format="png", distinct=1), seed=0)
    assert _decode(png[0]["url"]).format == "PNG" and image_size(base64.b64decode(png[0]["url"].split(",")[1])) == (
        40,
        30,
    )


def test_pick_images_counts_and_fraction():
    urls = [f"u{i}" for i in range(5)]
    rng = random.Random(0)
    picks = [pick_images(rng, urls, {"count": 1, "count_max": 3, "fraction": 0.5}) for _ in range(2000)]
    with_img = [p for p in picks if p]
    assert 0.45 < len(with_img) / len(picks) < 0.55
    assert {len(p) for p in with_img} == {1, 2, 3}
    assert all(pick_images(rng, urls, {"count": 2, "fraction": 1.0}).__len__() == 2 for _ in range(50))


def test_body_carries_openai_image_parts():
    msgs = with_images([{"role": "user", "content": "hello there"}], ["data:image/png;base64,AAAA"])
    body = json.loads(
        build_body(api="chat", model="m", messages=msgs, max_tokens=4, stream=True, ignore_eos=True, temperature=0.0)
    )
    content = body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "hello there"}
    assert content[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert with_images(msgs, []) is msgs


@pytest.mark.parametrize("fmt, w, h", [("jpeg", 512, 512), ("png", 100, 57), ("jpeg", 29, 28)])
def test_sim_charges_image_tokens_from_size(fmt, w, h):
    pool, _ = build_pool(Images(width=w, height=h, format=fmt, distinct=1), seed=1)
    text = "one two three four"
    msgs = with_images([{"role": "user", "content": text}], [pool[0]["url"]] * 2)
    p = parse_request({"messages": msgs, "max_tokens": 4}, chat=True, served_model="m", kv_capacity=10**6)
    per = math.ceil(w / 28) * math.ceil(h / 28)
    assert p.image_tokens == 2 * per
    plain = parse_request(
        {"messages": [{"role": "user", "content": text}], "max_tokens": 4},
        chat=True,
        served_model="m",
        kv_capacity=10**6,
    )
    assert p.prompt_tokens == plain.prompt_tokens + 2 * per  # prefilled like text
    p14 = parse_request(
        {"messages": msgs, "max_tokens": 4}, chat=True, served_model="m", kv_capacity=10**6, image_patch_px=14
    )
    assert p14.image_tokens == 2 * math.ceil(w / 14) * math.ceil(h / 14)


def test_sim_refuses_images_it_cannot_read():
    for url in ("https://example.com/cat.png", "data:image/png;base64," + base64.b64encode(b"not an image").decode()):
        msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
        with pytest.raises(ApiError) as e:
            parse_request({"messages": msgs}, chat=True, served_model="m", kv_capacity=10**6)
        assert e.value.status == 400


def _sc(images, api="chat"):
    return {
        "name": "img",
        "target": {"engine": "sim", "model": "m"},
        "workload": {"api": api, "images": images},
        "load": {"stages": [{"duration_s": 5, "users": 1}]},
    }


@pytest.mark.parametrize(
    "images, api, needle",
    [
        ({"width": 64, "height": 64}, "completions", "completions API"),
        ({"width": 0, "height": 64}, "chat", "width"),
        ({"width": 64, "height": -3}, "chat", "height"),
        ({"sizes": [{"width": 64, "height": 0}]}, "chat", "height"),
        ({"count": 0, "width": 64, "height": 64}, "chat", "count"),
        ({"width": 64}, "chat", "both width and height"),
        ({}, "chat", "need width and height"),
        ({"folder": "x", "dataset": "y"}, "chat", "not both"),
        ({"count": 3, "count_max": 2, "width": 8, "height": 8}, "chat", "count_max"),
    ],
)
def test_bad_image_settings_exit_2(images, api, needle):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(_sc(images, api), "img.yaml")
    assert any(needle in p for p in e.value.problems), e.value.problems
    assert e.value.exit_code == 2


def test_folder_and_dataset_inputs(tmp_path):
    good = tmp_path / "imgs"
    good.mkdir()
    Image.new("RGB", (56, 84), (10, 20, 30)).save(good / "a.png")
    Image.new("RGB", (30, 30)).save(good / "b.jpg", format="JPEG")
    (good / "notes.txt").write_text("ignored: not an image suffix")
    sc = parse_scenario(_sc({"folder": str(good)}), "img.yaml")
    check_inputs(sc, "img.yaml")
    pool, info = build_pool(sc.workload.images, 0)
    assert [(p["width"], p["height"]) for p in pool] == [(56, 84), (30, 30)] and info["source"] == "folder"
    assert pool[0]["url"].startswith("data:image/png;base64,") and pool[1]["url"].startswith("data:image/jpeg;base64,")

    ds = tmp_path / "ds.jsonl"
    ds.write_text(json.dumps({"image": "imgs/a.png"}) + "\n" + json.dumps({"images": ["imgs/b.jpg"]}) + "\n")
    pool, info = build_pool(parse_scenario(_sc({"dataset": str(ds)}), "t").workload.images, 0)
    assert len(pool) == 2 and info["source"] == "dataset"


def test_bad_local_images_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "cat.png").write_text("this is not a png")
    ds = tmp_path / "ds.jsonl"
    ds.write_text(json.dumps({"image": str(fake / "cat.png")}) + "\n")
    cases = [
        ({"folder": str(empty)}, "no image files"),
        ({"folder": str(tmp_path / "missing")}, "no such folder"),
        ({"folder": str(fake)}, "not an image"),
        ({"dataset": str(ds)}, "not an image"),
        ({"dataset": str(tmp_path / "nope.jsonl")}, "no such file"),
    ]
    for images, needle in cases:
        sc = parse_scenario(_sc(images), "img.yaml")
        with pytest.raises(ScenarioError) as e:
            check_inputs(sc, "img.yaml")
        assert needle in e.value.message and e.value.exit_code == 2, (images, e.value.message)


def test_image_stats_per_modality():
    rows = []
    for i in range(30):
        n = i % 3  # 0, 1, 2 images
        rows.append(
            {
                "ttft_ms": 10.0 + 100.0 * n,
                "ok": True,
                "error": None,
                "warmup": i < 3,
                "cooldown": False,
                "images": n,
                "request_bytes": 200 + 5000 * n,
                "image_tokens": 81 * n if n else None,
                "sched_s": None,
            }
        )
    st = image_stats(pd.DataFrame(rows))
    assert st["text_requests"] + st["image_requests"] == 27  # warmup excluded
    assert st["images_sent"] == sum(i % 3 for i in range(3, 30))
    assert st["image_tokens_per_image"] == 81.0
    assert st["ttft_ms_by_image_count"]["2"]["p50"] == 210.0 and st["ttft_ms_by_image_count"]["0"]["p50"] == 10.0
    assert st["request_bytes_mean"]["text"] == 200.0
    assert image_stats(pd.DataFrame([{"images": None, "ok": True}])) is None
