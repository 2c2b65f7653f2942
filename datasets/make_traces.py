"""Writes the small example traces in datasets/ (made up here, seeded; nothing is downloaded).

    python3 datasets/make_traces.py      # rewrites datasets/trace-*.{jsonl,csv}

The arrivals are bursty on purpose (a steady rate with a burst in the middle), which Poisson arrivals are not.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bursty_times(rng: random.Random, span_s: float, base_rps: float, burst: tuple[float, float, float]) -> list[float]:
    """Arrival times (s): Poisson at base_rps, plus `burst` = (start_s, length_s, extra_rps)."""
    out, t = [], 0.0
    while True:
        t += rng.expovariate(base_rps)
        if t >= span_s:
            break
        out.append(t)
    b0, bl, rps = burst
    t = b0
    while True:
        t += rng.expovariate(rps)
        if t >= b0 + bl:
            break
        out.append(t)
    return sorted(out)


def mooncake(path: Path) -> None:
    """~100 requests over 18 s; 3 shared 'system prompts' of 2 blocks (64 tokens each) and unique blocks after."""
    rng = random.Random(1)
    times = bursty_times(rng, 18.0, 3.0, (8.0, 3.0, 12.0))
    nxt = 6  # ids 0-5: the shared prefixes' blocks
    with open(path, "w") as f:
        for t in times:
            shared = rng.choice([[0, 1], [2, 3], [4, 5], []])
            own = rng.randint(1, 4)
            ids = shared + list(range(nxt, nxt + own))
            nxt += own
            n_in = 64 * (len(ids) - 1) + rng.randint(8, 64)  # the last block is partial
            f.write(json.dumps({"timestamp": int(t * 1000), "input_length": n_in,
                                "output_length": rng.randint(8, 48), "hash_ids": ids}) + "\n")


def azure(path: Path) -> None:
    rng = random.Random(2)
    t0 = datetime(2023, 11, 16, 18, 15, 46)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for t in bursty_times(rng, 20.0, 2.0, (10.0, 2.0, 10.0)):
            ts = (t0 + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0"  # 7 digits, as in the 2023 traces
            w.writerow([ts, rng.randint(20, 600), rng.randint(4, 80)])


def burstgpt(path: Path) -> None:
    rng = random.Random(3)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"])
        for t in bursty_times(rng, 20.0, 2.0, (5.0, 2.0, 8.0)):
            n_in, n_out = rng.randint(10, 500), rng.choice([0] + [rng.randint(5, 120)] * 9)  # 0: a failed request
            w.writerow([round(1000.0 + t, 3), rng.choice(["ChatGPT", "ChatGPT", "GPT-4"]), n_in, n_out, n_in + n_out,
                        "Conversation log"])


def generic(path: Path) -> None:
    rng = random.Random(4)
    with open(path, "w") as f:
        for t in bursty_times(rng, 20.0, 2.0, (12.0, 2.0, 8.0)):
            row = {"timestamp_ms": round(t * 1000.0, 1), "input_tokens": rng.randint(40, 300),
                   "output_tokens": rng.randint(8, 64), "model": rng.choice(["chat-small", "chat-large"])}
            if rng.random() < 0.6:
                row["prefix_id"] = rng.choice(["support-bot", "code-helper"])
                row["prefix_tokens"] = 32
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    mooncake(HERE / "trace-mooncake-mini.jsonl")
    azure(HERE / "trace-azure-mini.csv")
    burstgpt(HERE / "trace-burstgpt-mini.csv")
    generic(HERE / "trace-generic-mini.jsonl")
