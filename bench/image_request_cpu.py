"""Client CPU per request with images vs text-only (workload.images), as the locustfile builds and sends them.

Per request: pick the images (seeded), add them as image_url parts, JSON-encode the body (build_body) and write it
to a loopback socket whose far end discards it. Compared: text-only; images from the pool (encoded once, what the
harness does); and images encoded per request (Pillow + base64 each time, what the harness avoids).

    python3 bench/image_request_cpu.py [--n 2000] [--size 512] [--count 1]
"""

from __future__ import annotations

import argparse
import random
import socket
import threading
import time

from harness.load.images import build_pool, data_url, pick_images, synthetic_image, with_images
from harness.load.workload import build_body, make_prompt
from harness.scenario import Images


def _sink() -> socket.socket:
    a, b = socket.socketpair()

    def drain() -> None:
        while b.recv(1 << 20):
            pass

    threading.Thread(target=drain, daemon=True).start()
    return a


def _run(n: int, make_msgs, out: socket.socket) -> tuple[float, float]:
    rng = random.Random(0)
    c0 = time.process_time()
    total = 0
    for _ in range(n):
        msgs = make_msgs(rng)
        body = build_body(
            api="chat", model="m", messages=msgs, max_tokens=64, stream=True, ignore_eos=True, temperature=0.0
        )
        out.sendall(body)
        total += len(body)
    cpu = time.process_time() - c0
    return cpu / n * 1e6, total / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--count", type=int, default=1)
    a = ap.parse_args()
    im = Images(width=a.size, height=a.size, count=a.count, distinct=16)
    t_pool = time.process_time()
    pool, _ = build_pool(im, seed=0)
    t_pool = time.process_time() - t_pool
    urls = [p["url"] for p in pool]
    cfg = {"count": a.count, "fraction": 1.0}
    out = _sink()

    def text(rng):
        return [{"role": "user", "content": make_prompt(rng, 128)}]

    def pooled(rng):
        return with_images(text(rng), pick_images(rng, urls, cfg))

    def per_request(rng):
        raws = [synthetic_image(a.size, a.size, "jpeg", 85, f"{rng.random()}") for _ in range(a.count)]
        return with_images(text(rng), [data_url(r, "image/jpeg") for r in raws])

    rows = [("text-only", *_run(a.n, text, out)), ("images, encoded once (harness)", *_run(a.n, pooled, out))]
    rows.append(("images, encoded per request", *_run(max(a.n // 20, 20), per_request, out)))
    print(
        f"pool of {len(pool)} {a.size}x{a.size} JPEG images built in {t_pool * 1000:.0f} ms CPU (once, before the load)"
    )
    print(f"{'request':34} {'CPU us/request':>15} {'bytes/request':>14}")
    for name, us, nbytes in rows:
        print(f"{name:34} {us:15.1f} {nbytes:14.0f}")


if __name__ == "__main__":
    main()
