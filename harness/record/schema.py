"""The record's schema: run.json (provenance, timeline, status) and summary.json (what CI reads).

Both carry `schema_version`; canonical units only (ms, fractions 0..1, per-second rates, epoch seconds).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.record.store import SCHEMA_VERSION


class _M(BaseModel):
    model_config = ConfigDict(extra="allow")


class Timeline(_M):
    created_at: float | None = Field(None, description="Epoch seconds: the run folder was created.")
    stack_ready_at: float | None = Field(None, description="Ray and Prometheus reachable, Ray targets UP.")
    deployed_at: float | None = Field(None, description="The endpoint answered /v1/models with the model.")
    load_started_at: float | None = Field(None, description="Load shape t=0.")
    warmup_end_at: float | None = Field(None, description="Statistics start here.")
    load_ended_at: float | None = Field(None, description="Load stopped.")
    scrape_ended_at: float | None = Field(None, description="Server series fetched.")
    finished_at: float | None = Field(None, description="Record finalised.")


class RepeatGroup(_M):
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


class CacheReset(_M):
    attempted: bool = Field(..., description="A reset was asked for (false: --no-cache-reset or not applicable).")
    done: bool = Field(default=False, description="The engine confirmed the reset (every replica reached answered).")
    method: str | None = Field(
        default=None,
        description="How: `serve_handle_broadcast` (reset_prefix_cache on every replica of the engine deployment "
        "through a Serve handle), `http` (POST <endpoint>/reset_prefix_cache), or null.",
    )
    replicas: int | None = Field(default=None, description="Replicas reached (serve_handle_broadcast).")
    detail: str = Field("", description="What the engine answered, or why no reset happened.")
    at: float | None = Field(default=None, description="Epoch seconds the reset finished (before the load started).")
    duration_s: float | None = Field(default=None, description="Wall time of the reset call.")


class SLOResult(_M):
    slo: str = Field(..., description="The SLO as written in the scenario.")
    signal: str = Field(..., description="Signal name, e.g. ttft.")
    stat: str = Field(..., description="Statistic, e.g. p95.")
    op: str = Field(..., description="Comparison operator.")
    threshold: float = Field(..., description="Threshold in canonical units (`unit`).")
    observed: float | None = Field(None, description="Observed value in canonical units; null = no data (fails).")
    passed: bool = Field(..., description="Whether the SLO held.")
    source: str = Field(..., description="Where the value came from: client samples or the Prometheus series.")
    unit: str = Field(..., description="ms | fraction | per_s | '' (count).")
    reason: str = Field("", description="Why it failed, empty when passed.")


class DistStats(_M):
    """A distribution's statistics in the unit its field name carries (also `p99.9`, kept as an extra key)."""

    p50: float | None = Field(None, description="Median.")
    p90: float | None = Field(None, description="90th percentile.")
    p95: float | None = Field(None, description="95th percentile.")
    p99: float | None = Field(None, description="99th percentile.")
    max: float | None = Field(None, description="Largest value.")
    min: float | None = Field(None, description="Smallest value.")
    mean: float | None = Field(None, description="Arithmetic mean.")
    count: float | None = Field(None, description="Values the statistics cover.")


class SliceStats(_M):
    """Client statistics of one slice of the requests (one model, or one request kind), post-warmup, from the raw
    samples over the same measured window as the whole run."""

    requests: int = Field(..., description="Measured requests of this slice (failed ones included).")
    errors: int = Field(..., description="Failed requests.")
    error_rate: float | None = Field(None, description="errors / requests (fraction); null without requests.")
    ttft_ms: DistStats | None = Field(
        None, description="Time to first token of any kind (reasoning, content, tool call), ms."
    )
    ttft_content_ms: DistStats | None = Field(None, description="Time to the first content token, ms.")
    itl_ms: DistStats | None = Field(None, description="Inter-token latency per token, ms.")
    tpot_ms: DistStats | None = Field(None, description="Per-request mean time per output token, ms.")
    e2e_ms: DistStats | None = Field(None, description="End-to-end latency, ms.")
    output_tokens_per_s: float = Field(..., description="Output tokens per second of measured window.")
    requests_per_s: float = Field(..., description="Successful requests per second of measured window.")
    reasoning_tokens: float = Field(0.0, description="Reasoning tokens streamed (reasoning_content), in all.")
    tool_call_replies: int = Field(0, description="Successful replies that carried a tool call.")

    @classmethod
    def of(cls, client: dict[str, Any]) -> SliceStats:
        return cls.model_validate({k: client.get(k) for k in cls.model_fields if k in client})


class ModelStats(SliceStats):
    """One served model's requests (`summary.models`), plus its server signals (series with model_name=<id>)."""

    server: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Per server signal: its stats over this model's series only."
    )


class Summary(_M):
    schema_version: int = Field(SCHEMA_VERSION, description="Version of this file's layout.")
    run_id: str = Field(..., description="Folder name of the run.")
    scenario: str = Field(..., description="Scenario name.")
    status: Literal["completed", "interrupted", "failed"] = Field(..., description="How the run ended.")
    verdict: Literal["pass", "fail", "measured"] = Field(
        ...,
        description="pass (exit 0): the run completed and every SLO passed; fail (exit 1): an SLO failed, the run "
        "did not complete, or (measure-only) the load failed; measured (exit 0): a measure-only run (no SLOs) whose "
        "load worked. CI gating on `verdict == 'pass'` treats a measure-only run as not passed.",
    )
    slos: list[SLOResult] = Field(default_factory=list, description="One entry per SLO.")
    client: dict[str, Any] = Field(
        default_factory=dict, description="Client-side stats from raw samples (warmup excluded)."
    )
    server: dict[str, dict[str, float]] = Field(default_factory=dict, description="Per server signal: its stats.")
    server_series: dict[str, str | None] = Field(
        default_factory=dict, description="Which series answered each server signal."
    )
    reconciliation: dict[str, Any] = Field(default_factory=dict, description="Client vs server cross-checks.")
    warnings: list[str] = Field(default_factory=list, description="Things that make the numbers less trustworthy.")
    measure_only: bool = Field(
        False, description="The run only measured (no SLOs; scenario measure_only or --measure-only)."
    )
    load_failure: str | None = Field(
        None,
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
    server_resolution: dict[str, Any] = Field(
        default_factory=dict,
        description="Per server histogram signal: `quantile_buckets_ms` {stat: [lower, upper]} "
        "(the bucket each quantile lies in, upper null = +Inf; the quantile itself is a linear guess inside it) and "
        "`mean_note` when the mean is built from bucket midpoints (Ray's exporter).",
    )


class RunRecord(_M):
    schema_version: int = Field(SCHEMA_VERSION, description="Version of this file's layout.")
    run_id: str = Field(..., description="Folder name of the run.")
    status: Literal["running", "completed", "interrupted", "failed"] = Field(
        "running", description="`running` in a folder nobody is writing means the run died before finishing."
    )
    error: str | None = Field(None, description="What stopped the run, when it failed.")
    harness_version: str | None = Field(None, description="harness package version.")
    git_commit: str | None = Field(None, description="harness git commit (-dirty when modified).")
    scenario_file: str | None = Field(None, description="Path the scenario was loaded from.")
    scenario: dict[str, Any] = Field(..., description="The fully resolved scenario (defaults filled in).")
    environment: dict[str, Any] = Field(default_factory=dict, description="Python/Ray/vLLM versions, nodes, GPUs.")
    stack: dict[str, Any] = Field(default_factory=dict, description="Ray address, Prometheus URL, local or attached.")
    deployment: dict[str, Any] = Field(
        default_factory=dict, description="Engine, endpoint, deploy time, engine details."
    )
    timeline: Timeline = Field(default_factory=Timeline, description="When each stage ended (epoch seconds).")
    stage_durations_s: dict[str, float] = Field(default_factory=dict, description="Wall time per stage.")
    load: dict[str, Any] = Field(default_factory=dict, description="Load result: request counts, Locust's counts.")
    scrape: dict[str, Any] = Field(default_factory=dict, description="Resolved series, session, settle time, errors.")
    files: dict[str, str] = Field(default_factory=dict, description="Artifacts in the run folder.")
    repeat: RepeatGroup | None = Field(
        None, description="The repeat group this run belongs to (--repeat N), else null."
    )
    cache_reset: CacheReset | None = Field(
        default=None, description="Prefix-cache reset before the load (sweep steps and repeats), else null (not asked)."
    )
    origin: dict[str, str] = Field(
        default_factory=dict,
        description="Where the run came from: branch, commit, "
        "runner (CI variables, else git and the host name), CI artifacts URL.",
    )
