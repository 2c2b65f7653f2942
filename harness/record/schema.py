"""The record's schema: run.json (provenance, timeline, status) and summary.json (what CI reads).

Both carry `schema_version`; canonical units only (ms, fractions 0..1, per-second rates, epoch seconds). Every
field is declared (`extra="forbid"`): a field nobody declared fails the write, not a reader months later. Older
files load through `store.upgrade()` (harness/record/legacy.py) before they are validated.

Adding a field: declare it on the model that carries it, with a default (older records lack it) and a
`description=` (the file layout is documented here and nowhere else):
  - a client statistic (from the raw samples)  → `ClientStats` (a latency distribution: a `DistStats | None`)
  - a server statistic of a signal             → `ServerStat` (one block per signal; blocks carry what they have)
  - a whole-run result in summary.json         → `Summary`
  - a section of run.json                      → `RunRecord` (written by one `Recorder.record_*` method)
A rename or removal also needs a SCHEMA_VERSION bump and an upgrade step in legacy.py.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from harness.record.store import SCHEMA_VERSION

Status = Literal["completed", "interrupted", "failed"]  # how a run ended
RunStatus = Literal["running", "completed", "interrupted", "failed"]  # run.json: `running` until it ends


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)
    _omit_if_none: ClassVar[frozenset[str]] = frozenset()  # fields written only when they have a value

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        out = handler(self)
        return {k: v for k, v in out.items() if v is not None or k not in self._omit_if_none}


class _Sparse(_Strict):
    """A block of optional values written only when set: it carries the statistics it has (a gauge has no `total`,
    an empty window no percentiles), exactly as the JSON did before these blocks were typed."""

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        out = handler(self)
        alias = info.by_alias is not False
        keep = {
            (f.alias or n) if alias else n for n, f in type(self).model_fields.items() if n in self.model_fields_set
        }
        return {k: v for k, v in out.items() if k in keep}


# ---------- client statistics (summary.json `client`, from the raw per-request samples) ----------


class DistStats(_Sparse):
    """A distribution's statistics in the unit its field name ends with (`ttft_ms` → ms)."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = Field(default=None, alias="p99.9")
    max: float | None = None
    min: float | None = None
    mean: float | None = None
    count: float | None = Field(default=None, description="Values in the distribution.")


class Bunching(_Strict):
    events: int = Field(..., description="SSE events received.")
    multi_token_event_frac: float = Field(..., description="Share of events that carried several tokens.")
    sub_ms_gap_frac: float = Field(..., description="Share of gaps between events under 0.5 ms.")
    token_count_source: str | None = Field(default=None, description="usage | tokenizer | events.")
    bunched: bool = Field(..., description="The streams arrived bunched (either share above its threshold).")


class Goodput(_Strict):
    criteria: dict[str, float] = Field(default_factory=dict, description="Scenario `goodput:` bounds (ms).")
    total: float = Field(..., description="Requests that succeeded and met every criterion.")
    rate: float = Field(..., description="Good requests per second of the measured window.")
    attainment: float | None = Field(default=None, description="Good requests / all post-warmup requests.")
    requests: int = Field(..., description="Post-warmup requests.")


class ClientStats(_Sparse):
    """summary.json `client`: statistics over the post-warmup samples (a block or count is absent where the run
    had nothing to compute it from, e.g. `ttft_from_send_ms` outside open loop)."""

    latency_from: Literal["send", "scheduled arrival"] | None = Field(
        default=None, description="Where ttft/e2e count from: the send, or (open loop) the scheduled arrival."
    )
    ttft_ms: DistStats | None = None
    ttft_content_ms: DistStats | None = Field(default=None, description="Time to the first content token.")
    itl_ms: DistStats | None = Field(default=None, description="Per token (tokens per SSE event counted).")
    chunk_gap_ms: DistStats | None = Field(default=None, description="Per SSE event.")
    tpot_ms: DistStats | None = None
    e2e_ms: DistStats | None = None
    ttft_from_send_ms: DistStats | None = Field(default=None, description="Open loop: TTFT from the send.")
    e2e_from_send_ms: DistStats | None = Field(default=None, description="Open loop: e2e from the send.")
    stream_bunching: Bunching | None = None
    goodput: Goodput | None = Field(default=None, description="With scenario `goodput:` criteria.")
    dropped_arrivals: int | None = Field(default=None, description="Open-loop arrivals never sent (failed requests).")
    dropped_fraction: float | None = None
    requests: int | None = Field(default=None, description="Post-warmup requests (failed ones included).")
    errors: int | None = None
    errors_by_class: dict[str, int] | None = None
    error_rate: float | None = None
    output_tokens: float | None = None
    output_tokens_per_s: float | None = None
    requests_per_s: float | None = Field(default=None, description="Successful requests per second.")
    duration_s: float | None = Field(default=None, description="The measured window (post-warmup, pre-cooldown).")
    warmup_requests: int | None = None
    cooldown_requests: int | None = None
    reasoning_tokens: float | None = Field(default=None, description="Reasoning tokens streamed, in all.")
    reasoning_tokens_per_request: DistStats | None = Field(
        default=None, description="Reasoning tokens per successful request (null: none streamed)."
    )
    tool_call_replies: int | None = Field(default=None, description="Successful replies that carried a tool call.")


class SliceStats(_Strict):
    """Client statistics of one slice of the requests (one model, or one request kind), post-warmup, from the raw
    samples over the same measured window as the whole run."""

    requests: int = Field(..., description="Measured requests of this slice (failed ones included).")
    errors: int = Field(..., description="Failed requests.")
    error_rate: float | None = Field(default=None, description="errors / requests (fraction); null without requests.")
    ttft_ms: DistStats | None = Field(
        default=None, description="Time to first token of any kind (reasoning, content, tool call), ms."
    )
    ttft_content_ms: DistStats | None = Field(default=None, description="Time to the first content token, ms.")
    itl_ms: DistStats | None = Field(default=None, description="Inter-token latency per token, ms.")
    tpot_ms: DistStats | None = Field(default=None, description="Per-request mean time per output token, ms.")
    e2e_ms: DistStats | None = Field(default=None, description="End-to-end latency, ms.")
    output_tokens_per_s: float = Field(..., description="Output tokens per second of measured window.")
    requests_per_s: float = Field(..., description="Successful requests per second of measured window.")
    reasoning_tokens: float = Field(default=0.0, description="Reasoning tokens streamed (reasoning_content), in all.")
    tool_call_replies: int = Field(default=0, description="Successful replies that carried a tool call.")

    @classmethod
    def of(cls, client: dict[str, Any]) -> SliceStats:
        return cls.model_validate({k: client.get(k) for k in cls.model_fields if k in client})


class ModelStats(SliceStats):
    """One served model's requests (`summary.models`), plus its server signals (series with model_name=<id>)."""

    server: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Per server signal: its stats over this model's series only."
    )


# ---------- server statistics (summary.json `server`, from Prometheus and the harness's own monitors) ----------


class ServerStat(_Sparse):
    """One server signal's statistics in canonical units; which ones a block has depends on the signal's kind."""

    # gauges and histograms (quantiles: a histogram's are interpolated inside its buckets)
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = Field(default=None, alias="p99.9")
    max: float | None = None
    min: float | None = None
    mean: float | None = None
    last: float | None = Field(default=None, description="Gauge: the last value in the window.")
    samples: float | None = Field(default=None, description="Gauge: points in the window.")
    # counters
    total: float | None = Field(default=None, description="Counter: increase after the warmup.")
    total_run: float | None = Field(default=None, description="Counter: increase from load start.")
    total_stats_window: float | None = Field(default=None, description="Counter: increase within the stats window.")
    rate: float | None = Field(default=None, description="Counter: per second of the stats window.")
    # histograms
    count: float | None = Field(default=None, description="Histogram: observations after the warmup.")
    count_run: float | None = Field(default=None, description="Histogram: observations from load start.")
    # ratios of counters (e.g. prefix-cache hit rate)
    value: float | None = None
    value_run: float | None = None
    hits: float | None = None
    queries: float | None = None
    # output correctness probes (signal `outputs`; `total` = probes sent)
    changed: float | None = Field(default=None, description="Outputs: probes whose output differs from the baseline.")
    empty: float | None = Field(default=None, description="Outputs: probes that returned no text or failed.")


class ScopeStats(_Strict):
    client: ClientStats
    server: dict[str, ServerStat] = Field(default_factory=dict)
    spans_s: list[tuple[float, float]] = Field(default_factory=list, description="The scope's time spans.")
    duration_s: float = 0.0


# ---------- summary.json ----------


class SLOResult(_Strict):
    slo: str = Field(..., description="The SLO as written in the scenario.")
    signal: str = Field(..., description="Signal name, e.g. ttft.")
    stat: str = Field(..., description="Statistic, e.g. p95.")
    op: str = Field(..., description="Comparison operator.")
    threshold: float = Field(..., description="Threshold in canonical units (`unit`).")
    observed: float | None = Field(
        default=None, description="Observed value in canonical units; null = no data (fails)."
    )
    passed: bool = Field(..., description="Whether the SLO held.")
    source: str = Field(..., description="Where the value came from: client samples or the Prometheus series.")
    unit: str = Field(..., description="ms | fraction | per_s | '' (count).")
    reason: str = Field(default="", description="Why it failed, empty when passed.")
    scope: str | None = Field(
        default=None, description="`@<stage>` or `@steady`: the SLO held over that part of the run."
    )


class ImageStats(_Strict):
    """workload.images: text vs image requests (measured samples, warmup excluded)."""

    text_requests: int = Field(..., description="Requests sent without images.")
    image_requests: int = Field(..., description="Requests sent with one image or more.")
    images_sent: int = Field(..., description="Images sent in all.")
    image_tokens: float | None = Field(
        default=None, description="Prompt tokens the server counted for images (usage), in all; null: not reported."
    )
    image_tokens_per_image: float | None = Field(default=None, description="image_tokens / images sent (answered).")
    request_bytes_mean: dict[str, float | None] = Field(
        default_factory=dict, description="Mean request body bytes sent: `text` and `image` requests."
    )
    ttft_ms_by_image_count: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Images per request → TTFT stats (p50 p95 p99 mean count), ms."
    )


class StoppedEarly(_Strict):
    trigger: Literal["max_errors", "saturation"] = Field(..., description="Which `load.stop_when` rule fired.")
    at: float = Field(..., description="Epoch seconds the stop was requested (statistics end here).")
    at_s: float = Field(..., description="Seconds after the load's start the stop was requested.")
    detail: str = Field(..., description="What fired, in one line.")
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        description="The values that fired it: saturation: the windows (offered_rps, achieved_rps, in_flight, "
        "ttft_p50_ms, ...), the rule, saturated_since_s, capacity_rps (median achieved rate while saturated); "
        "max_errors: errors, finished, nth_error_at_s or the share and its window.",
    )


class Summary(_Strict):
    _omit_if_none = frozenset({"autoscaling", "scopes", "faults", "unrecognized", "stopped_early", "images"})

    schema_version: int = Field(default=SCHEMA_VERSION, description="Version of this file's layout.")
    run_id: str = Field(..., description="Folder name of the run.")
    scenario: str = Field(..., description="Scenario name.")
    status: Status = Field(..., description="How the run ended.")
    verdict: Literal["pass", "fail", "measured"] = Field(
        ...,
        description="pass (exit 0): the run completed and every SLO passed; fail (exit 1): an SLO failed, the run "
        "did not complete, or (measure-only) the load failed; measured (exit 0): a measure-only run (no SLOs) whose "
        "load worked. CI gating on `verdict == 'pass'` treats a measure-only run as not passed.",
    )
    slos: list[SLOResult] = Field(default_factory=list, description="One entry per SLO.")
    client: ClientStats = Field(
        default_factory=ClientStats, description="Client-side stats from raw samples (warmup excluded)."
    )
    server: dict[str, ServerStat] = Field(default_factory=dict, description="Per server signal: its stats.")
    server_series: dict[str, str | None] = Field(
        default_factory=dict, description="Which series answered each server signal."
    )
    reconciliation: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Client vs server cross-checks (harness/record/summary.py `reconcile`)."
    )
    warnings: list[str] = Field(default_factory=list, description="Things that make the numbers less trustworthy.")
    measure_only: bool = Field(
        default=False, description="The run only measured (no SLOs; scenario measure_only or --measure-only)."
    )
    load_failure: str | None = Field(
        default=None,
        description="Why the load itself failed (run not completed, no request measured, or more than half of "
        "the requests failed), else null. Such a run is not comparable (`harness compare` exits 2 without --force).",
    )
    models: dict[str, ModelStats] = Field(
        default_factory=dict,
        description="Several models in the run: per model id, its requests' client stats and its server signals.",
    )
    request_kinds: dict[str, SliceStats] = Field(
        default_factory=dict,
        description="Several request kinds in the run (plain, tools, json_schema): per kind, its client stats.",
    )
    server_resolution: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per server histogram signal: `quantile_buckets_ms` {stat: [lower, upper]} "
        "(the bucket each quantile lies in, upper null = +Inf; the quantile itself is a linear guess inside it) and "
        "`mean_note` when the mean is built from bucket midpoints (Ray's exporter).",
    )
    autoscaling: dict[str, Any] | None = Field(
        default=None,
        description="Replicas against the load stages (harness/slo/autoscaling.py `analyze`); null: no series.",
    )
    scopes: dict[str, ScopeStats] | None = Field(
        default=None, description="Per SLO scope (`@stage`, `@steady`): its stats."
    )
    faults: list[dict[str, Any]] | None = Field(
        default=None, description="Scenario `faults:`: what fired when, and the recovery (harness/run/faults.py)."
    )
    unrecognized: dict[str, Any] | None = Field(
        default=None,
        description="Fields of an older record (schema 1) this layout does not declare, kept as they were.",
    )
    images: ImageStats | None = Field(
        default=None, description="workload.images: per-modality stats (text vs image requests); null: no images."
    )
    modalities: dict[str, SliceStats] = Field(
        default_factory=dict,
        description="workload.images with text-only requests too: per modality (`text`, `image`), its client stats.",
    )
    stopped_early: StoppedEarly | None = Field(
        default=None,
        description="`load.stop_when` ended the load early: the run was judged on the window it ran (up to `at`); "
        "null: the load ran its stages.",
    )


# ---------- run.json ----------


class Timeline(_Strict):
    created_at: float | None = Field(default=None, description="Epoch seconds: the run folder was created.")
    stack_ready_at: float | None = Field(default=None, description="Ray and Prometheus reachable, Ray targets UP.")
    deployed_at: float | None = Field(default=None, description="The endpoint answered /v1/models with the model.")
    load_started_at: float | None = Field(default=None, description="Load shape t=0.")
    warmup_end_at: float | None = Field(default=None, description="Statistics start here.")
    load_ended_at: float | None = Field(default=None, description="Load stopped.")
    scrape_ended_at: float | None = Field(default=None, description="Server series fetched.")
    finished_at: float | None = Field(default=None, description="Record finalised.")


class RepeatGroup(_Strict):
    group_id: str = Field(..., description="Name of the repeat group folder that holds every repeat's run folder.")
    index: int = Field(..., ge=1, description="This run's place in the group, 1-based.")
    count: int = Field(..., ge=1, description="Repeats asked for (--repeat N); fewer ran if the group stopped early.")
    mode: Literal["same_deployment"] = Field(
        default="same_deployment",
        description="How repeats relate: `same_deployment` = one stack and one Serve app for the whole group "
        "(deployed by the first repeat, kept between repeats), with the engine's prefix cache reset before "
        "each repeat unless --no-cache-reset (see `cache_reset`).",
    )
    cache_reset: bool = Field(
        default=True, description="Whether the group resets the engine's prefix cache before each repeat."
    )


class CacheReset(_Strict):
    attempted: bool = Field(..., description="A reset was asked for (false: --no-cache-reset or not applicable).")
    done: bool = Field(default=False, description="The engine confirmed the reset (every replica reached answered).")
    method: str | None = Field(
        default=None,
        description="How: `serve_handle_broadcast` (reset_prefix_cache on every replica of the engine deployment "
        "through a Serve handle), `http` (POST <endpoint>/reset_prefix_cache), or null.",
    )
    replicas: int | None = Field(default=None, description="Replicas reached (serve_handle_broadcast).")
    detail: str = Field(default="", description="What the engine answered, or why no reset happened.")
    at: float | None = Field(default=None, description="Epoch seconds the reset finished (before the load started).")
    duration_s: float | None = Field(default=None, description="Wall time of the reset call.")


class Probe(_Strict):
    prompt: str = Field(..., description="The prompt as sent (chat: one user message; completions: the prompt).")
    output: str = Field(default="", description="The text the engine answered.")
    sha256: str | None = Field(default=None, description="SHA-256 of the output text (UTF-8); null when it failed.")
    output_tokens: int | None = Field(default=None, description="completion_tokens the engine reported.")
    finish_reason: str | None = Field(default=None, description="The engine's finish_reason.")
    error: str | None = Field(default=None, description="Why the probe failed (HTTP status and body), else null.")
    latency_ms: float | None = Field(default=None, description="Wall time of the request.")


class Correctness(_Strict):
    """run.json `correctness`: what the greedy probes answered (compared by `harness compare` and `outputs.*`)."""

    api: str = Field(..., description="chat | completions.")
    model: str = Field(..., description="Model id the probes were sent to.")
    max_tokens: int = Field(..., description="Tokens asked for per probe.")
    seed: int = Field(..., description="Seed sent with each probe (temperature 0).")
    source: str = Field(..., description="Where the prompts came from: inline, a file path, or the shipped default.")
    probes: list[Probe] = Field(default_factory=list, description="One entry per prompt, in order.")
    baseline: str | None = Field(default=None, description="Run folder whose outputs were the reference, if any.")
    changed: list[int] = Field(
        default_factory=list, description="Indexes of probes whose output differs from the baseline's (same prompt)."
    )
    started_at: float | None = Field(default=None, description="Epoch seconds the first probe was sent.")
    duration_s: float | None = Field(default=None, description="Wall time of all probes.")


class Owner(_Strict):
    pid: int | None = Field(default=None, description="Process that writes the folder.")
    host: str | None = Field(default=None, description="Host it runs on.")


class _Kept(BaseModel):
    """A recorded scenario's parts that readers (reports, compare, history) use, typed; everything else is kept as
    written. Not the Scenario model: an old record stays readable after the scenario rules grow."""

    model_config = ConfigDict(extra="allow")


class _RecordedAutoscaling(_Kept):
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None


class _RecordedTarget(_Kept):
    engine: str | None = None
    model: str | None = None
    autoscaling: _RecordedAutoscaling | None = None


class _RecordedStage(_Kept):
    name: str | None = None
    duration_s: float
    users: int | None = None
    spawn_rate: float | None = None
    rate_rps: float | None = None
    ramp_to_rps: float | None = None


class _RecordedLoad(_Kept):
    warmup_s: float = 0.0
    cooldown_s: float = 0.0
    stages: list[_RecordedStage] = []


class _RecordedScenario(_Kept):  # sections may be absent (not null): readers use .get(key, {})
    name: str = ""
    description: str = ""
    target: _RecordedTarget = _RecordedTarget()
    workload: dict[str, Any] = {}
    load: _RecordedLoad = _RecordedLoad()
    slos: list[str] = []


class _RecordedLoadResult(_Kept):
    started_at: float | None = None
    warmup_end: float | None = None
    stats_end: float | None = None
    ended_at: float | None = None
    workload: dict[str, Any] = {}
    generator: dict[str, Any] = {}


class RunRecord(_Strict):
    _omit_if_none = frozenset({"alerts", "faults", "unrecognized"})

    schema_version: int = Field(default=SCHEMA_VERSION, description="Version of this file's layout.")
    run_id: str = Field(..., description="Folder name of the run.")
    status: RunStatus = Field(
        default="running", description="`running` in a folder nobody is writing means the run died before finishing."
    )
    error: str | None = Field(default=None, description="What stopped the run, when it failed.")
    harness_version: str | None = Field(default=None, description="harness package version.")
    git_commit: str | None = Field(default=None, description="harness git commit (-dirty when modified).")
    scenario_file: str | None = Field(default=None, description="Path the scenario was loaded from.")
    scenario: dict[str, Any] = Field(..., description="The fully resolved scenario (defaults filled in).")

    @field_validator("scenario")
    @classmethod
    def _scenario_shape(cls, v: dict[str, Any]) -> dict[str, Any]:
        _RecordedScenario.model_validate(v)  # a damaged field fails here (exit 2 naming run.json), not in a renderer
        return v

    @field_validator("load")
    @classmethod
    def _load_shape(cls, v: dict[str, Any]) -> dict[str, Any]:
        _RecordedLoadResult.model_validate(v)  # the stats window compare and reports cut the samples by
        return v

    labels: dict[str, str] = Field(default_factory=dict, description="`--label k=v`: what the run is (e.g. ray=2.60).")
    owner: Owner = Field(default_factory=Owner, description="Who writes the folder: tells a live run from a dead one.")
    origin: dict[str, str | None] = Field(
        default_factory=dict,
        description="Where the run came from: branch, commit, "
        "runner (CI variables, else git and the host name), CI artifacts URL.",
    )
    environment: dict[str, Any] = Field(default_factory=dict, description="Python/Ray/vLLM versions, nodes, GPUs.")
    stack: dict[str, Any] = Field(default_factory=dict, description="Ray address, Prometheus URL, local or attached.")
    deployment: dict[str, Any] = Field(
        default_factory=dict, description="Engine, endpoint, deploy time, engine details."
    )
    timeline: Timeline = Field(default_factory=Timeline, description="When each stage ended (epoch seconds).")
    stage_durations_s: dict[str, float] = Field(default_factory=dict, description="Wall time per stage.")
    stage_errors: dict[str, str] = Field(
        default_factory=dict, description="Optional stages that failed while the run went on (e.g. scrape)."
    )
    load: dict[str, Any] = Field(
        default_factory=dict, description="Load result (harness/load/runner.py LoadResult): counts, generator health."
    )
    scrape: dict[str, Any] = Field(default_factory=dict, description="Resolved series, session, settle time, errors.")
    node_stats: dict[str, Any] = Field(
        default_factory=dict,
        description="Node-level signals per node; `gpus`: per node and GPU index, utilisation (fraction), memory "
        "used (bytes), power (W) and SM clock (MHz) from Ray's node series or the DCGM exporter's, with the series "
        "that answered, or {no_data: why} (a CPU cluster has none).",
    )
    alerts: list[dict[str, Any]] | None = Field(default=None, description="Alerts the local Alertmanager delivered.")
    faults: list[dict[str, Any]] | None = Field(
        default=None, description="Scenario `faults:`: what fired, the recovery."
    )
    files: dict[str, str] = Field(default_factory=dict, description="Artifacts in the run folder: file → what it is.")
    repeat: RepeatGroup | None = Field(
        default=None, description="The repeat group this run belongs to (--repeat N), else null."
    )
    cache_reset: CacheReset | None = Field(
        default=None, description="Prefix-cache reset before the load (sweep steps and repeats), else null (not asked)."
    )
    correctness: Correctness | None = Field(
        default=None, description="Output correctness probes (scenario workload.correctness), else null."
    )
    unrecognized: dict[str, Any] | None = Field(
        default=None,
        description="Fields of an older record (schema 1) this layout does not declare, kept as they were.",
    )
