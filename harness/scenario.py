"""Scenario: the YAML a user writes, as one pydantic model tree (extra keys forbidden, units in names)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ScenarioError

_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)  # `1e400` is inf, not a duration


class Autoscaling(_Model):
    min_replicas: int = Field(1, ge=0, description="Fewest replicas Serve keeps running.")
    max_replicas: int = Field(1, ge=1, description="Most replicas Serve may start.")
    initial_replicas: int | None = Field(None, ge=0, description="Replicas at deploy time (default: min_replicas).")
    target_ongoing_requests: float = Field(
        8, gt=0, description="Ongoing requests per replica that Serve's autoscaler aims for."
    )
    upscale_delay_s: float = Field(3.0, ge=0, description="How long demand must stay high before scaling up.")
    downscale_delay_s: float = Field(30.0, ge=0, description="How long demand must stay low before scaling down.")
    look_back_period_s: float = Field(5.0, gt=0, description="Window over which Serve averages ongoing requests.")

    @model_validator(mode="after")
    def _order(self) -> "Autoscaling":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self


class SimEngine(_Model):
    """Knobs of the simulated vLLM-like engine (continuous batching over a paged KV cache)."""

    ttft_ms: float = Field(40.0, ge=0, description="Fixed time to first token before prefill cost, per request.")
    prefill_ms_per_token: float = Field(0.05, ge=0, description="Extra prefill time per prompt token.")
    itl_ms: float = Field(8.0, ge=0, description="Decode step time with a batch of one (inter-token latency).")
    itl_ms_per_seq: float = Field(0.05, ge=0, description="Extra decode step time per running sequence in the batch.")
    jitter_frac: float = Field(0.05, ge=0, le=1, description="Seeded multiplicative jitter on step times (0.05 = ±5%).")
    max_num_seqs: int = Field(32, ge=1, description="Most sequences decoded together (vLLM max_num_seqs).")
    kv_blocks: int = Field(512, ge=1, description="KV-cache blocks per replica.")
    block_size: int = Field(16, ge=1, description="Tokens per KV-cache block.")
    slowdown_factor: float = Field(1.0, gt=0, description="Multiplies every step time: inject a regression on purpose.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Fraction of requests answered with HTTP 500 (fault injection).")
    seed: int = Field(0, description="Seed for jitter and error injection.")
    coalesce_events: bool = Field(
        False, description="Send every token produced since the last write as ONE SSE event (as vLLM merges pending "
        "tokens when its consumer lags) instead of one event per token: exercises per-token ITL.")


class VllmEngine(_Model):
    """Real vLLM through Ray Serve LLM (ray.serve.llm): turned into an LLMConfig by serve_apps/vllm_app.py."""

    model_source: str = Field(
        ...,
        description="Hugging Face id, local directory of the model, or `tiny`: the harness's own tiny Llama "
        "(random weights, built on first use in $HARNESS_MODEL_DIR or ~/.cache/harness/models/tiny-llama).",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vLLM engine arguments (AsyncEngineArgs names); keys that have their own field here "
        "are refused.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica for tensor parallelism.")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline-parallel stages per replica.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. A100 or L4; none on CPU.")
    device: Literal["cpu", "gpu"] = Field("gpu", description="Where the engine runs: gpu (production) or cpu.")
    stream_batching_interval_ms: float = Field(
        0.0, ge=0, description="Ray Serve LLM stream batching; 0 sends every token as produced (true TTFT/ITL)."
    )
    runtime_env_vars: dict[str, str] = Field(default_factory=dict, description="Env vars for the engine replicas.")
    max_model_len: int | None = Field(
        None, ge=16, description="Longest context (prompt + output) in tokens (vLLM max_model_len; default: model's)."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Most sequences the engine batches together (vLLM max_num_seqs)."
    )
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = Field(
        None, description="Weight/activation dtype (vLLM dtype; default auto)."
    )
    enable_prefix_caching: bool | None = Field(
        None, description="Reuse KV blocks of shared prompt prefixes (vLLM enable_prefix_caching; default: vLLM's)."
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Fraction of GPU memory vLLM may use (device gpu only; default 0.9)."
    )
    cpu_kvcache_space_gib: int | None = Field(
        None, ge=1, description="KV-cache size in GiB on CPU (env VLLM_CPU_KVCACHE_SPACE; device cpu only; default 1 "
        "unless engine_kwargs.kv_cache_memory_bytes sets it in bytes).",
    )
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Serve's cap on requests in flight per replica (default: Ray Serve LLM's, unbounded)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "VllmEngine":
        own = {"max_model_len", "max_num_seqs", "dtype", "enable_prefix_caching", "gpu_memory_utilization",
               "tensor_parallel_size", "pipeline_parallel_size"}
        clash = sorted(own & self.engine_kwargs.keys())
        if clash:
            raise ValueError(f"engine_kwargs: set {', '.join(clash)} with the field(s) of the same name under `vllm:`")
        reserved = sorted({"model", "served_model_name"} & self.engine_kwargs.keys())
        if reserved:
            raise ValueError(f"engine_kwargs: {', '.join(reserved)} come from `model_source` and `target.model`")
        if self.device == "cpu":
            if self.accelerator_type:
                raise ValueError("accelerator_type is for device gpu; remove it for device cpu")
            if self.gpu_memory_utilization is not None:
                raise ValueError("gpu_memory_utilization is for device gpu; on cpu use cpu_kvcache_space_gib")
            if self.cpu_kvcache_space_gib is not None and "kv_cache_memory_bytes" in self.engine_kwargs:
                raise ValueError("set either cpu_kvcache_space_gib or engine_kwargs.kv_cache_memory_bytes, not both")
        elif self.cpu_kvcache_space_gib is not None:
            raise ValueError("cpu_kvcache_space_gib is for device cpu; on gpu use gpu_memory_utilization")
        return self


class Target(_Model):
    engine: Literal["sim", "vllm", "external"] = Field(..., description="What serves the load: sim | vllm | external.")
    model: str = Field(..., min_length=1, description="Served model id (the `model` field of each request).")
    url: str | None = Field(None, description="Base URL of an OpenAI-compatible endpoint (engine: external).")
    app_name: str = Field("llm", pattern=_NAME_RE, description="Ray Serve application name.")
    route_prefix: str = Field("/", description="Route prefix of the Serve application.")
    api_key_env: str | None = Field(
        None, description="Name of the env var holding the API key (sent as a Bearer token; never recorded)."
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Serve autoscaling config.")
    replica_cpus: float = Field(0.5, ge=0, description="Logical CPUs each replica reserves in Ray.")
    sim: SimEngine | None = Field(None, description="Simulated-engine knobs (engine: sim).")
    vllm: VllmEngine | None = Field(None, description="vLLM settings (engine: vllm).")

    @model_validator(mode="after")
    def _engine_fields(self) -> "Target":
        if self.engine == "external" and not self.url:
            raise ValueError("engine 'external' needs `url` (an OpenAI-compatible base URL)")
        if self.engine == "sim" and self.sim is None:
            self.sim = SimEngine()
        if self.engine == "vllm" and self.vllm is None:
            raise ValueError("engine 'vllm' needs a `vllm:` section with at least `model_source`")
        if self.url and self.engine != "external":
            raise ValueError("`url` is only for engine 'external' (sim and vllm are deployed by the harness)")
        return self


class TokenDist(_Model):
    mean: float = Field(..., gt=0, description="Mean length in tokens.")
    stddev: float = Field(0.0, ge=0, description="Standard deviation in tokens (normal, clipped to [min, max]).")
    min: int = Field(1, ge=1, description="Shortest length in tokens.")
    max: int | None = Field(None, ge=1, description="Longest length in tokens.")


class Workload(_Model):
    api: Literal["chat", "completions"] = Field("chat", description="OpenAI endpoint: chat or completions.")
    stream: bool = Field(True, description="Stream tokens (SSE); needed for TTFT and ITL.")
    prompt_tokens: TokenDist = Field(default_factory=lambda: TokenDist(mean=128), description="Prompt length.")
    output_tokens: TokenDist = Field(default_factory=lambda: TokenDist(mean=64), description="Output length (max_tokens).")
    ignore_eos: bool = Field(True, description="Ask the server to produce exactly max_tokens (vLLM ignore_eos).")
    continuous_usage_stats: bool = Field(
        True, description="Ask for usage in every streamed event (stream_options.continuous_usage_stats; vLLM, Ray "
        "Serve LLM and the sim engine support it) to count the tokens each event carries for per-token ITL. Turn off "
        "for servers that reject it; the tokenizer (if on disk) or one token per event is used instead.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    request_timeout_s: float = Field(60.0, gt=0, description="Per-request timeout; a timed out request is an error.")
    seed: int = Field(0, description="Seed for prompt and length sampling.")
    tokenizer: str | None = Field(
        None, description="tokenizer.json, or a model directory holding one: synthetic prompts then have exact token "
        "counts (needs the `tokenizers` package). Default: the served model's directory when target.vllm.model_source "
        "is local; otherwise prompt lengths are word-approximate. The record says which.",
    )
    dataset: Dataset | None = Field(None, description="Replay prompts from a JSONL dataset instead of synthetic ones.")
    shared_prefix: SharedPrefix | None = Field(
        None, description="Synthetic prompts that share a few long prefixes (exercises the server's prefix cache)."
    )
    session_turns: int = Field(
        1, ge=1, description="Synthetic multi-turn sessions: turns per session; each turn resends the whole history."
    )

    @model_validator(mode="after")
    def _one_source(self) -> "Workload":
        if self.dataset is not None and self.shared_prefix is not None:
            raise ValueError("set either `dataset` or `shared_prefix`, not both")
        if self.dataset is not None and self.session_turns > 1:
            raise ValueError("session_turns is for synthetic prompts; for a dataset set dataset.multi_turn: true")
        return self


class Dataset(_Model):
    """A JSONL file: one JSON object per line."""

    path: str = Field(..., min_length=1, description="JSONL file: absolute, relative to the current directory, or a "
                      "shipped one (e.g. datasets/sharegpt-mini.jsonl).")
    format: Literal["sharegpt", "prompts"] = Field(
        ..., description="sharegpt: {conversations: [{from: human|gpt, value}, ...]}; "
        "prompts: {prompt, output_tokens} (output_tokens optional: workload.output_tokens).",
    )
    multi_turn: bool = Field(
        False, description="sharegpt: replay each conversation turn by turn as one session (history grows; the "
        "dataset's answers are the history); false: first human turn only.",
    )
    max_items: int | None = Field(None, ge=1, description="Use only the first N lines.")


class SharedPrefix(_Model):
    """num_prefixes × suffixes_per_prefix distinct prompts: prefix + suffix (suffix length: workload.prompt_tokens)."""

    num_prefixes: int = Field(..., ge=1, description="Distinct shared prefixes.")
    prefix_tokens: int = Field(..., ge=1, description="Length of each prefix in tokens.")
    suffixes_per_prefix: int = Field(..., ge=1, description="Distinct suffixes per prefix.")


class Stage(_Model):
    name: str | None = Field(None, description="Stage label in reports (default: stage<i>).")
    duration_s: float = Field(..., gt=0, description="How long this stage lasts.")
    users: int | None = Field(None, ge=0, description="Concurrent users (closed loop: each waits for its reply).")
    spawn_rate: float = Field(1.0, gt=0, description="Users started (or stopped) per second to reach `users`.")
    rate_rps: float | None = Field(
        None, ge=0, description="Open loop (load.arrival set): arrivals per second in this stage (default: "
        "load.arrival.rate_rps). With session_turns/multi_turn an arrival starts a session.",
    )
    ramp_to_rps: float | None = Field(
        None, ge=0, description="Open loop: ramp the rate linearly from rate_rps to this by the stage's end."
    )


class Arrival(_Model):
    """Open-loop arrivals: requests are sent on schedule, whether or not earlier ones have completed."""

    process: Literal["poisson", "gamma", "constant"] = Field(
        "poisson", description="Inter-arrival times: poisson (exponential), gamma (see burstiness), constant."
    )
    rate_rps: float | None = Field(None, gt=0, description="Arrivals per second for stages without rate_rps.")
    burstiness: float = Field(
        1.0, gt=0, description="gamma: shape of the inter-arrival distribution; 1 = Poisson, < 1 burstier, > 1 more "
        "regular (coefficient of variation 1/sqrt(burstiness)).",
    )
    max_concurrency: int | None = Field(
        None, ge=1, description="Most requests in flight; later arrivals wait for a slot (their lateness is recorded)."
    )


class Load(_Model):
    warmup_s: float = Field(0.0, ge=0, description="Leading seconds whose samples are excluded from statistics.")
    stages: list[Stage] = Field(..., min_length=1, description="Load shape: consecutive stages.")
    max_requests: int | None = Field(None, gt=0, description="Stop after this many requests (bound on the run).")
    think_time_s: float = Field(0.0, ge=0, description="Pause between a user's requests.")
    workers: int = Field(0, ge=0, description="Locust worker processes (0: a single local process).")
    arrival: Arrival | None = Field(
        None, description="Open-loop arrivals at stage rates (rate_rps); absent: closed loop with stage users."
    )
    cooldown_s: float = Field(0.0, ge=0, description="Trailing seconds whose samples are excluded from statistics.")

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages)

    @property
    def open_loop(self) -> bool:
        return self.arrival is not None

    @model_validator(mode="after")
    def _bounds(self) -> "Load":
        if self.warmup_s + self.cooldown_s >= self.duration_s:
            what = f"warmup_s + cooldown_s ({self.warmup_s + self.cooldown_s})" if self.cooldown_s else f"warmup_s ({self.warmup_s})"
            raise ValueError(f"{what} must be shorter than the stages ({self.duration_s} s)")
        for i, s in enumerate(self.stages):
            if self.arrival is None and (s.users is None or s.rate_rps is not None or s.ramp_to_rps is not None):
                raise ValueError(f"stages[{i}]: closed loop needs `users` (for open loop with rate_rps set `load.arrival`)")
            if self.arrival is not None:
                if s.users is not None:
                    raise ValueError(f"stages[{i}]: open loop (load.arrival) uses rate_rps, not users")
                if s.rate_rps is None:
                    if self.arrival.rate_rps is None:
                        raise ValueError(f"stages[{i}]: needs rate_rps (or set load.arrival.rate_rps)")
                    s.rate_rps = self.arrival.rate_rps
        for i, s in enumerate(self.stages):
            if s.name is None:
                s.name = f"stage{i}"
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self


class Fault(_Model):
    """One fault the harness injects during the load (see harness/faults.py)."""

    at_s: float = Field(..., ge=0, description="When, in seconds after the load starts (t=0 of the stages).")
    action: Literal["kill_replica"] = Field(..., description="kill_replica: ray.kill one or more replica actors.")
    deployment: str | None = Field(
        None, min_length=1, description="Serve deployment whose replicas are killed (default: the app's only one)."
    )
    count: int = Field(1, ge=1, description="How many replicas to kill at once.")
    recovery_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for the replica count to come back (else: no recovery, an SLO fails)."
    )


class Goodput(_Model):
    """Per-request criteria of a *good* request (as `vllm bench serve --goodput`): it succeeded and met every bound set."""

    ttft_ms: float | None = Field(None, gt=0, description="Longest time to first token of a good request.")
    tpot_ms: float | None = Field(None, gt=0, description="Longest mean time per output token of a good request.")
    e2e_ms: float | None = Field(None, gt=0, description="Longest end-to-end latency of a good request.")
    itl_max_ms: float | None = Field(None, gt=0, description="Longest single inter-token gap of a good request.")

    @model_validator(mode="after")
    def _some(self) -> "Goodput":
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("set at least one of ttft_ms, tpot_ms, e2e_ms, itl_max_ms")
        return self


class Scenario(_Model):
    name: str = Field(..., pattern=_NAME_RE, description="Scenario name (used in run ids and history).")
    description: str = Field("", description="What this scenario checks, in a sentence.")
    target: Target = Field(..., description="What is deployed (or reached) and served.")
    workload: Workload = Field(default_factory=Workload, description="What each request looks like.")
    load: Load = Field(..., description="How much load, over how long.")
    slos: list[str] = Field(default_factory=list, description="SLOs like `ttft.p95 <= 500ms`; all must pass.")
    goodput: Goodput | None = Field(
        None, description="Criteria of a good request; gives the SLO signals goodput.rate (req/s) and goodput.attainment (%)."
    )
    scrape: "ScrapeSettings" = Field(default_factory=lambda: ScrapeSettings(), description="Server-metric scraping.")
    faults: list[Fault] = Field(
        default_factory=list, description="Faults injected during the load, e.g. {at_s: 20, action: kill_replica}."
    )

    @model_validator(mode="after")
    def _faults_in_load(self) -> "Scenario":
        for i, f in enumerate(self.faults):
            if f.at_s >= self.load.duration_s:
                raise ValueError(f"faults[{i}].at_s ({f.at_s}) must fall inside the load ({self.load.duration_s} s)")
            if self.target.engine == "external":
                raise ValueError(f"faults[{i}]: kill_replica needs a deployed app (engine sim or vllm), not external")
        return self

    @model_validator(mode="after")
    def _slo_meaning(self) -> "Scenario":
        from harness.slo.parse import check_slos  # late: slo imports nothing from here

        errs = check_slos(self.slos, [s.name for s in self.load.stages], self.goodput is not None)
        if errs:
            raise ValueError("; ".join(errs))
        return self

    @field_validator("slos")
    @classmethod
    def _slos_parse(cls, v: list[str]) -> list[str]:
        from harness.slo.parse import parse_slo  # late: slo imports nothing from here

        errs = []
        for i, s in enumerate(v):
            try:
                parse_slo(s)
            except ValueError as e:
                errs.append(f"[{i}] {e}")
        if errs:
            raise ValueError("; ".join(errs))
        return v


class ScrapeSettings(_Model):
    step_s: float = Field(1.0, gt=0, description="Resolution of range queries.")
    settle_timeout_s: float = Field(30.0, ge=0, description="Longest wait for server counters to stop moving.")
    settle_quiet_s: float = Field(3.0, ge=0, description="Counters must be unchanged this long to count as settled.")


Scenario.model_rebuild()


# ---------- loading and error formatting ----------


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(source: str, err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see `harness scenarios show` for the fields)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{source}: {_loc(loc)}: {msg}")
    return lines


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{source}: the file must hold a mapping (name:, target:, load:, ...), got {type(data).__name__}",
            fix="see scenarios/smoke.yaml for the layout",
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(f"{source}: invalid scenario", problems=format_validation_error(source, e)) from None
    except RecursionError:
        raise ScenarioError(f"{source}: nested too deeply to be a scenario", fix="see scenarios/smoke.yaml for the layout") from None


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    if not p.exists():
        near = resolve_name(str(path))
        hint = f"did you mean {near}?" if near else "give a path to a .yaml file, or a name from `harness scenarios list`"
        raise ScenarioError(f"{p}: scenario file not found", fix=hint)
    if p.is_dir():
        raise ScenarioError(f"{p}: is a directory, not a scenario file", fix="give the path of a .yaml file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot read the file ({e.__class__.__name__}: {e})", fix="check permissions and encoding (UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ScenarioError(f"{p}: YAML nested too deeply", fix="a scenario is a few levels deep; see scenarios/smoke.yaml") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ScenarioError(f"{p}: {where}YAML syntax error: {problem}", fix="fix the YAML syntax at that line") from None
    return parse_scenario(data, str(p))


SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


def list_scenarios(root: Path = SCENARIO_DIR) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml")) if root.exists() else []


def resolve_name(name: str) -> Path | None:
    """`smoke` → scenarios/smoke.yaml when such a shipped scenario exists."""
    stem = re.sub(r"\.ya?ml$", "", Path(name).name)
    for p in list_scenarios():
        if p.stem == stem:
            return p
    return None


def check_inputs(sc: Scenario, source: str = "<scenario>") -> None:
    """Fail before anything starts when a local file the scenario names is missing or unreadable."""
    from harness.errors import HarnessError

    ds = sc.workload.dataset
    if ds is not None:
        from harness.load.prepare import resolve_dataset

        try:
            with open(resolve_dataset(ds.path), "rb") as f:
                f.read(1)
        except HarnessError as e:
            raise ScenarioError(f"{source}: {e.message}", fix=e.fix) from None
        except OSError as e:
            raise ScenarioError(f"{source}: workload.dataset.path: {ds.path}: cannot read ({e.strerror or e})",
                                fix="check the file's permissions") from None
    v = sc.target.vllm
    if v is not None and v.model_source.startswith((".", "/", "~")):
        p = Path(v.model_source).expanduser()
        if not p.is_dir():
            raise ScenarioError(f"{source}: target.vllm.model_source: {p}: model directory not found",
                                fix="give a folder holding config.json and the weights, a Hugging Face id, or `tiny`")
        if not os.access(p, os.R_OK | os.X_OK):
            raise ScenarioError(f"{source}: target.vllm.model_source: {p}: directory not readable", fix="check its permissions")


def resolve_scenario_path(arg: str) -> Path:
    p = Path(arg)
    if p.exists():
        return p
    return resolve_name(arg) or p
