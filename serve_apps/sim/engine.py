"""A vLLM-like LLM engine model in pure asyncio: continuous batching over a paged KV cache.

No Ray, no tokens of real text: the engine only decides *when* each token of each request exists.
One scheduler task runs engine steps back to back; every step decodes one token for each running
sequence and prefills the sequences admitted in that step. Requests are async generators that yield
token indices as their tokens are produced, so a client over HTTP sees real TTFT and ITL.

Step timing (milliseconds, then x slowdown_factor x seeded jitter in [1-j, 1+j]):
    decode part  = itl_ms + itl_ms_per_seq * decoding_batch_size        (if any sequence decodes)
    prefill part = ttft_ms + prefill_ms_per_token * tokens_to_prefill   (if any sequence is admitted)
A step that both admits and decodes costs the sum (prefill stalls the batch, as in a real engine).

KV cache: `kv_blocks` blocks of `block_size` tokens; a sequence of L tokens (prompt + generated)
holds ceil(L / block_size) blocks. Admission is FCFS and stops at the first request that does not fit
(blocks or `max_num_seqs`). A running sequence that cannot get the block for its next token preempts
the most recently admitted sequence (recompute: blocks freed, back to the head of the queue, its
prompt and already generated tokens are prefilled again on re-admission). As in vLLM v1, nothing new
is admitted in a step that preempted.

Prefix cache (`prefix_caching`, off by default): an LRU of chained block hashes (at most `kv_blocks` of them)
that the caller derives from the prompt (`submit(prefix_keys=...)`). The leading blocks already seen are not
prefilled again (at least one prompt token always is, as in vLLM); `reset_prefix_cache()` empties it.

Ground truth: every request keeps its arrival, first-scheduled, per-token and finish times
(`loop.time()` when the token was released to the consumer); finished requests stay in
`engine.history` (bounded).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Engine knobs; same names, defaults and meaning as `harness.scenario.SimEngine`."""

    ttft_ms: float = 40.0
    prefill_ms_per_token: float = 0.05
    itl_ms: float = 8.0
    itl_ms_per_seq: float = 0.05
    jitter_frac: float = 0.05
    max_num_seqs: int = 32
    kv_blocks: int = 512
    block_size: int = 16
    slowdown_factor: float = 1.0
    error_rate: float = 0.0
    seed: int = 0
    startup_error: str | None = None  # raised by every replica's constructor (deploy-failure fault injection)
    coalesce_events: bool = False  # one SSE event per produced range (several tokens), as vLLM does when behind
    reasoning_tokens: int = 0  # chat replies: the first N tokens stream as reasoning_content
    tool_call_probability: float = 0.0  # chat requests with tools and tool_choice auto: share answered by a tool call
    prefix_caching: bool = False  # reuse prefilled prompt blocks seen before (see the module docstring)
    image_patch_px: int = 28  # chat image inputs: one prompt token per patch_px x patch_px tile (app.image_tokens)

    def __post_init__(self) -> None:
        checks = [
            (self.ttft_ms >= 0, "ttft_ms must be >= 0"),
            (self.prefill_ms_per_token >= 0, "prefill_ms_per_token must be >= 0"),
            (self.itl_ms >= 0, "itl_ms must be >= 0"),
            (self.itl_ms_per_seq >= 0, "itl_ms_per_seq must be >= 0"),
            (0 <= self.jitter_frac <= 1, "jitter_frac must lie in [0, 1]"),
            (self.max_num_seqs >= 1, "max_num_seqs must be >= 1"),
            (self.kv_blocks >= 1, "kv_blocks must be >= 1"),
            (self.block_size >= 1, "block_size must be >= 1"),
            (self.slowdown_factor > 0, "slowdown_factor must be > 0"),
            (0 <= self.error_rate <= 1, "error_rate must lie in [0, 1]"),
            (self.reasoning_tokens >= 0, "reasoning_tokens must be >= 0"),
            (0 <= self.tool_call_probability <= 1, "tool_call_probability must lie in [0, 1]"),
            (self.image_patch_px >= 1, "image_patch_px must be >= 1"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError("; ".join(bad))

    @classmethod
    def from_dict(cls, d: dict | None) -> SimConfig:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown sim setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks * self.block_size


class InjectedFault(RuntimeError):
    """Raised by `submit` for the seeded `error_rate` fraction of requests."""


WAITING, RUNNING, FINISHED = "waiting", "running", "finished"


class SimRequest:
    """One request: scheduler state plus its ground-truth timeline (loop.time() seconds)."""

    __slots__ = (
        "request_id",
        "prompt_tokens",
        "max_tokens",
        "state",
        "generated",
        "blocks",
        "arrival",
        "scheduled",
        "first_token",
        "finished",
        "token_times",
        "preemptions",
        "finished_reason",
        "prompt_counted",
        "waiter",
        "cached_tokens",
        "image_tokens",
    )

    def __init__(self, request_id: str, prompt_tokens: int, max_tokens: int, arrival: float) -> None:
        self.request_id = request_id
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.state = WAITING
        self.generated = 0
        self.blocks = 0
        self.arrival = arrival
        self.scheduled: float | None = None  # first admission (queue time ends here)
        self.first_token: float | None = None
        self.finished: float | None = None
        self.token_times: list[float] = []
        self.preemptions = 0
        self.finished_reason: str | None = None
        self.prompt_counted = False
        self.waiter: asyncio.Future | None = None
        self.cached_tokens = 0  # prompt tokens served from the prefix cache (not prefilled)
        self.image_tokens = 0  # of prompt_tokens: the images' (chat image inputs), prefilled like text

    # ground-truth views (seconds)
    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def itls_s(self) -> list[float]:
        t = self.token_times
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def e2e_s(self) -> float | None:
        return None if self.finished is None else self.finished - self.arrival

    @property
    def queue_s(self) -> float | None:
        return None if self.scheduled is None else self.scheduled - self.arrival

    def to_dict(self, wall_offset: float = 0.0) -> dict:
        """Timeline as plain data; add `wall_offset` to turn loop times into Unix times."""
        w = wall_offset
        return {
            "request_id": self.request_id,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "output_tokens": self.generated,
            "finished_reason": self.finished_reason,
            "preemptions": self.preemptions,
            "cached_tokens": self.cached_tokens,
            "image_tokens": self.image_tokens,
            "arrival": self.arrival + w,
            "scheduled": None if self.scheduled is None else self.scheduled + w,
            "first_token": None if self.first_token is None else self.first_token + w,
            "finished": None if self.finished is None else self.finished + w,
            "token_times": [t + w for t in self.token_times],
            "ttft_s": self.ttft_s,
            "e2e_s": self.e2e_s,
            "queue_s": self.queue_s,
        }


@dataclasses.dataclass(slots=True)
class StepStats:
    """What one step did, handed to the observer once per step (and once on going idle)."""

    t: float
    running: int
    waiting: int
    kv_usage: float
    new_prompt_tokens: int = 0
    generated_tokens: int = 0
    preemptions: int = 0
    itls_s: list[float] = dataclasses.field(default_factory=list)


class EngineObserver(Protocol):
    """Metrics hook. Called from the scheduler task: implementations must only record, not block."""

    def on_step(self, stats: StepStats) -> None: ...

    def on_finish(self, req: SimRequest) -> None: ...


class SimLLMEngine:
    def __init__(
        self,
        config: SimConfig | None = None,
        observer: EngineObserver | None = None,
        history_limit: int = 10_000,
        trace_limit: int = 10_000,
    ) -> None:
        self.config = config or SimConfig()
        self.observer = observer
        self.history: deque[SimRequest] = deque(maxlen=history_limit)
        # (start, duration_s, decoding batch, admitted) per step: timing model's own ground truth
        self.step_trace: deque[tuple[float, float, int, int]] = deque(maxlen=trace_limit)
        # separate streams so error decisions do not depend on how many steps ran
        self._jitter_rng = random.Random(f"jitter-{self.config.seed}")
        self._error_rng = random.Random(f"error-{self.config.seed}")
        self._ids = itertools.count()
        self._waiting: deque[SimRequest] = deque()
        self._running: list[SimRequest] = []  # admission order: last = most recently admitted
        self._free_blocks = self.config.kv_blocks
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._idle = True
        self.steps = 0
        self.preemptions_total = 0
        self.submitted = 0
        self.rejected_injected = 0
        self._prefix: OrderedDict[int, None] = OrderedDict()  # block hash -> None, least recently used first
        self.prefix_queries_tokens = 0  # prompt tokens looked up in the prefix cache
        self.prefix_hits_tokens = 0  # of those, served from it
        self.prefix_resets = 0
        self.wall_offset = time.time() - time.monotonic()  # replaced on start by the loop's own clock

    # ----- public API -----

    def submit(
        self,
        prompt_tokens: int,
        max_tokens: int,
        request_id: str | None = None,
        prefix_keys: Sequence[int] = (),
        image_tokens: int = 0,
    ) -> SimRequest:
        """Queue a request. Raises ValueError (bad sizes) or InjectedFault (seeded error injection).
        `prefix_keys`: chained hashes of the prompt's full blocks (used with `prefix_caching`)."""
        cfg = self.config
        if prompt_tokens < 1:
            raise ValueError("prompt must have at least 1 token")
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if prompt_tokens + max_tokens > cfg.kv_capacity_tokens:
            # it could never finish: like vLLM's max_model_len check
            raise ValueError(
                f"prompt_tokens + max_tokens = {prompt_tokens + max_tokens} exceeds the KV cache "
                f"({cfg.kv_blocks} blocks x {cfg.block_size} tokens = {cfg.kv_capacity_tokens})"
            )
        self.submitted += 1
        if cfg.error_rate and self._error_rng.random() < cfg.error_rate:
            self.rejected_injected += 1
            raise InjectedFault("injected engine error (sim error_rate)")
        loop = self._ensure_started()
        req = SimRequest(request_id or f"sim-{next(self._ids)}", prompt_tokens, max_tokens, loop.time())
        req.image_tokens = image_tokens
        if cfg.prefix_caching:
            req.cached_tokens = self._lookup_prefix(prompt_tokens, prefix_keys)
        self._waiting.append(req)
        if self._idle and self._wake is not None:  # _ensure_started made it
            self._wake.set()
        return req

    async def stream_ranges(self, req: SimRequest) -> AsyncGenerator[tuple[int, int], None]:
        """Yield (start, stop) index ranges of tokens as they become available; closing early aborts.

        A consumer that fell behind gets everything produced so far in one range, so it can write one
        network message instead of many.
        """
        sent = 0
        loop = asyncio.get_running_loop()
        try:
            while True:
                n = req.generated
                if sent < n:
                    yield sent, n
                    sent = n
                    continue
                if req.state == FINISHED:
                    return
                req.waiter = loop.create_future()
                await req.waiter
        finally:
            req.waiter = None
            if req.state != FINISHED:
                self.abort(req)

    async def stream(self, req: SimRequest) -> AsyncGenerator[int, None]:
        """Yield token indices 0..n-1 of `req` as they are produced; closing early aborts it."""
        async with aclosing(self.stream_ranges(req)) as ranges:
            async for start, stop in ranges:
                for i in range(start, stop):
                    yield i

    async def generate(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[int]:
        req = self.submit(prompt_tokens, max_tokens)
        async for i in self.stream(req):
            yield i

    def abort(self, req: SimRequest) -> None:
        if req.state == FINISHED:
            return
        if req.state == WAITING:
            try:
                self._waiting.remove(req)
            except ValueError:
                pass
        else:
            self._running.remove(req)
            self._free_blocks += req.blocks
            req.blocks = 0
        self._finish(req, "abort", asyncio.get_running_loop().time())

    def _lookup_prefix(self, prompt_tokens: int, keys: Sequence[int]) -> int:
        """Cached prompt tokens for these block keys; records every key (LRU, bounded by kv_blocks)."""
        cache = self._prefix
        hits = 0
        for k in keys:
            if k not in cache:
                break
            hits += 1
        for k in keys:
            cache[k] = None
            cache.move_to_end(k)
        while len(cache) > self.config.kv_blocks:
            cache.popitem(last=False)
        cached = min(hits * self.config.block_size, prompt_tokens - 1)
        self.prefix_queries_tokens += prompt_tokens
        self.prefix_hits_tokens += cached
        return cached

    def reset_prefix_cache(self) -> int:
        """Forget every cached prefix block (as vLLM's reset_prefix_cache); returns how many were dropped."""
        n = len(self._prefix)
        self._prefix.clear()
        self.prefix_resets += 1
        return n

    def stats(self) -> dict:
        return {
            "running": len(self._running),
            "waiting": len(self._waiting),
            "kv_usage": self.kv_usage,
            "free_blocks": self._free_blocks,
            "steps": self.steps,
            "preemptions": self.preemptions_total,
            "submitted": self.submitted,
            "injected_errors": self.rejected_injected,
            "finished": len(self.history),
            "prefix_cache_blocks": len(self._prefix),
            "prefix_cache_queries_tokens": self.prefix_queries_tokens,
            "prefix_cache_hits_tokens": self.prefix_hits_tokens,
            "prefix_cache_resets": self.prefix_resets,
        }

    @property
    def kv_usage(self) -> float:
        return 1.0 - self._free_blocks / self.config.kv_blocks

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # ----- scheduler -----

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self.wall_offset = time.time() - loop.time()
            self._task = loop.create_task(self._run(), name="sim-engine-scheduler")
        return loop

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _preempt_last(self) -> SimRequest:
        victim = self._running.pop()
        self._free_blocks += victim.blocks
        victim.blocks = 0
        victim.state = WAITING
        victim.preemptions += 1
        self.preemptions_total += 1
        self._waiting.appendleft(victim)  # recompute first, like vLLM
        return victim

    def _schedule(self, now: float) -> tuple[list[SimRequest], list[SimRequest], int]:
        """Reserve KV for this step's tokens. Returns (decoding, admitted, preemptions)."""
        running = self._running
        preempted = 0
        i = 0
        while i < len(running):
            seq = running[i]
            need = self._blocks_for(seq.prompt_tokens + seq.generated + 1) - seq.blocks
            while need > self._free_blocks:
                victim = self._preempt_last()
                preempted += 1
                if victim is seq:
                    break
            if seq.state != RUNNING:
                break  # seq preempted itself: it was the last one
            self._free_blocks -= need
            seq.blocks += need
            i += 1
        decoding = list(running)

        admitted: list[SimRequest] = []
        if not preempted:
            max_seqs = self.config.max_num_seqs
            waiting = self._waiting
            while waiting and len(running) < max_seqs:
                seq = waiting[0]
                need = self._blocks_for(seq.prompt_tokens + seq.generated + 1)
                if need > self._free_blocks:
                    break  # FCFS: the head blocks the queue
                waiting.popleft()
                self._free_blocks -= need
                seq.blocks = need
                seq.state = RUNNING
                if seq.scheduled is None:
                    seq.scheduled = now
                running.append(seq)
                admitted.append(seq)
        return decoding, admitted, preempted

    def _step_seconds(self, n_decoding: int, prefill_tokens: int, n_admitted: int) -> float:
        cfg = self.config
        ms = 0.0
        if n_decoding:
            ms += cfg.itl_ms + cfg.itl_ms_per_seq * n_decoding
        if n_admitted:
            ms += cfg.ttft_ms + cfg.prefill_ms_per_token * prefill_tokens
        jitter = 1.0 + cfg.jitter_frac * (2.0 * self._jitter_rng.random() - 1.0) if cfg.jitter_frac else 1.0
        return ms * cfg.slowdown_factor * jitter / 1000.0

    def _finish(self, req: SimRequest, reason: str, t: float) -> None:
        req.state = FINISHED
        req.finished = t
        req.finished_reason = reason
        self.history.append(req)
        w = req.waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.observer is not None:
            self.observer.on_finish(req)

    def _emit_idle(self, t: float) -> None:
        if self.observer is not None:
            self.observer.on_step(StepStats(t, len(self._running), len(self._waiting), self.kv_usage))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self._running and not self._waiting:
                self._idle = True
                self._emit_idle(loop.time())
                wake = self._wake
                assert wake is not None, "_ensure_started makes it before starting this task"
                wake.clear()
                await wake.wait()
                self._idle = False
                deadline = loop.time()
            now = loop.time()
            decoding, admitted, preempted = self._schedule(now)
            if not decoding and not admitted:
                # only reachable if everything was just aborted or preempted: retry without spinning
                await asyncio.sleep(0.001)
                deadline = loop.time()
                continue

            prompt_new = 0
            prefill_tokens = 0
            for seq in admitted:
                prefill_tokens += seq.prompt_tokens + seq.generated  # recompute re-prefills outputs too
                if not seq.prompt_counted:
                    prefill_tokens -= seq.cached_tokens  # first admission: cached prefix blocks are not prefilled
                    seq.prompt_counted = True
                    prompt_new += seq.prompt_tokens
            dur = self._step_seconds(len(decoding), prefill_tokens, len(admitted))
            # absolute deadlines keep the average rate; resync only after falling a whole step behind
            start = deadline if now - deadline < dur else now
            deadline = start + dur
            self.step_trace.append((start, dur, len(decoding), len(admitted)))
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t = loop.time()
            self.steps += 1

            itls: list[float] = []
            produced = 0
            for group, is_decode in ((decoding, True), (admitted, False)):
                for seq in group:
                    if seq.state != RUNNING:
                        continue  # aborted during the step
                    if is_decode or seq.generated:
                        itls.append(t - seq.token_times[-1])
                    else:
                        seq.first_token = t
                    seq.generated += 1
                    seq.token_times.append(t)
                    produced += 1
                    if seq.generated >= seq.max_tokens:
                        self._running.remove(seq)
                        self._free_blocks += seq.blocks
                        seq.blocks = 0
                        self._finish(seq, "length", t)
                    else:
                        w = seq.waiter
                        if w is not None and not w.done():
                            w.set_result(None)
            if self.observer is not None:
                self.observer.on_step(
                    StepStats(
                        t, len(self._running), len(self._waiting), self.kv_usage, prompt_new, produced, preempted, itls
                    )
                )
