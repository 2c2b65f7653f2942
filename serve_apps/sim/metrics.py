"""Engine metrics exported through Ray under the names real vLLM exports through Ray.

Real vLLM (RayPrometheusStatLogger) appears in Prometheus as `ray_vllm_<name>` with labels
`model_name`, `engine` and `ReplicaId`. Ray prefixes `ray_` and appends `_total` to counters, so
counters are registered without the suffix. Names containing ':' are silently dropped by Ray 2.60's
exporter (only a FutureWarning), hence the underscores.

Cost: gauges are set once per step and only when changed (plus a refresh on every flush: Ray 2.60's
agent drops a gauge series that was not re-set for two export intervals, so an idle engine would vanish);
everything else (histogram observations, counter increments) is buffered by the scheduler and written to Ray by
`flush()`, which a background task calls a few times per second -- Ray exports at most once a second anyway.
"""

from __future__ import annotations

import asyncio
import logging

from serve_apps.sim.engine import SimRequest, StepStats

log = logging.getLogger(__name__)

# Bucket boundaries copied from the exposition of vLLM 0.32 through Ray 2.60 (reference/*.prom).
TTFT_BUCKETS = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
]
ITL_BUCKETS = [
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
]
REQUEST_LATENCY_BUCKETS = [
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
]

LABELS = ("model_name", "engine", "ReplicaId")
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
_MAX_BUFFER = 500_000  # bound memory if flush() stops being called


class RayEngineMetrics:
    """EngineObserver that records into `ray.util.metrics` (import Ray lazily: engine stays Ray-free)."""

    def __init__(self, model_name: str, replica_id: str = "", engine_index: str = "0") -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self.tags = {"model_name": model_name, "engine": engine_index, "ReplicaId": replica_id}

        def gauge(name: str, desc: str) -> Gauge:
            return Gauge(name, desc, tag_keys=LABELS).set_default_tags(self.tags)

        def counter(name: str, desc: str, extra: tuple[str, ...] = ()) -> Counter:
            c = Counter(name, desc, tag_keys=LABELS + extra)
            return c.set_default_tags(self.tags) if not extra else c

        def hist(name: str, desc: str, buckets: list[float]) -> Histogram:
            return Histogram(name, desc, boundaries=buckets, tag_keys=LABELS).set_default_tags(self.tags)

        self.running = gauge("vllm_num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm_num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_usage = gauge("vllm_kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prompt_tokens = counter("vllm_prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm_generation_tokens", "Number of generation tokens processed.")
        self.preemptions = counter("vllm_num_preemptions", "Cumulative number of preemption from the engine.")
        self.success = counter(
            "vllm_request_success", "Count of successfully processed requests.", ("finished_reason",)
        )
        self.ttft = hist(
            "vllm_time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS
        )
        self.itl = hist("vllm_inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = hist(
            "vllm_request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        )
        self.e2e = hist(
            "vllm_e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS
        )
        self.queue = hist(
            "vllm_request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.prefill = hist(
            "vllm_request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.decode = hist(
            "vllm_request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )

        self._last_gauges: tuple[int, int, float] | None = None
        self._prompt = 0
        self._generated = 0
        self._preempted = 0
        self._itls: list[float] = []
        self._finished: list[SimRequest] = []
        self._task: asyncio.Task | None = None
        self.set_gauges(0, 0, 0.0)  # series exist (at 0) before the first request, like vLLM's

    # ----- EngineObserver (called on the scheduler task: record only) -----

    def on_step(self, s: StepStats) -> None:
        self.set_gauges(s.running, s.waiting, s.kv_usage)
        self._prompt += s.new_prompt_tokens
        self._generated += s.generated_tokens
        self._preempted += s.preemptions
        if s.itls_s and len(self._itls) < _MAX_BUFFER:
            self._itls.extend(s.itls_s)

    def on_finish(self, req: SimRequest) -> None:
        if len(self._finished) < _MAX_BUFFER:
            self._finished.append(req)

    def set_gauges(self, running: int, waiting: int, kv_usage: float, force: bool = False) -> None:
        g = (running, waiting, kv_usage)
        if g == self._last_gauges and not force:
            return
        self._last_gauges = g
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)

    # ----- writing to Ray -----

    def flush(self) -> None:
        # Ray's agent evicts a gauge not re-set within ~2 export intervals: refresh even when idle
        if self._last_gauges is not None:
            self.set_gauges(*self._last_gauges, force=True)
        if self._prompt:
            self.prompt_tokens.inc(self._prompt)
            self._prompt = 0
        if self._generated:
            self.generation_tokens.inc(self._generated)
            self._generated = 0
        if self._preempted:
            self.preemptions.inc(self._preempted)
            self._preempted = 0
        itls, self._itls = self._itls, []
        observe = self.itl.observe
        for v in itls:
            observe(v)
        done, self._finished = self._finished, []
        for r in done:
            self.success.inc(1, {**self.tags, "finished_reason": r.finished_reason or "error"})
            first, finished, scheduled = r.first_token, r.finished, r.scheduled
            if first is None:
                continue  # aborted before its first token: no latency to report (vLLM does the same)
            assert finished is not None and scheduled is not None, "a finished request with a token was scheduled"
            self.ttft.observe(first - r.arrival)
            self.e2e.observe(finished - r.arrival)
            self.queue.observe(scheduled - r.arrival)
            self.prefill.observe(first - scheduled)
            self.decode.observe(finished - first)
            if r.generated > 1:
                self.tpot.observe((finished - first) / (r.generated - 1))

    def start(self, interval_s: float = 0.25) -> bool:
        """Flush periodically on the running event loop (idempotent). False if no loop is running."""
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            self._task = loop.create_task(self._flush_loop(interval_s))
        return True

    async def _flush_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.flush()
            except Exception:  # a metrics hiccup must never take the engine down
                log.exception("sim metrics flush failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.flush()
