"""Scenario: the YAML a user writes, as one pydantic model tree (extra keys forbidden, units in names)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from harness.errors import ScenarioError
from harness.paths import asset_dir

_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_ENV_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Upper bounds on magnitudes: far beyond any real run, low enough that a slip (an extra 000, ms for s) is caught
# before anything starts. Each field's description names its bound.
MAX_DURATION_S = 7 * 86400  # one load: a week
MAX_USERS = 100_000
MAX_RATE_RPS = 100_000.0
MAX_TOKENS = 1_048_576  # 1 Mi tokens: beyond the longest context windows served today
MAX_REPLICAS = 1000
MAX_ARRIVALS = 10_000_000  # the open-loop schedule of one load process stops here (harness/load/arrivals.py)
PROM_MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series


def _wants_number(ann: Any) -> bool:
    import typing

    args = typing.get_args(ann) or (ann,)
    return any(a in (int, float) for a in args) and bool not in args


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)  # `1e400` is inf, not a duration

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """pydantic reads `users: true` (YAML also: yes/on) as 1; a boolean where a number belongs is a mistake."""
        if isinstance(data, dict):
            bad = [
                k
                for k, v in data.items()
                if isinstance(v, bool) and k in cls.model_fields and _wants_number(cls.model_fields[k].annotation)
            ]
            if bad:
                raise ValueError(
                    "; ".join(
                        f"{k}: {str(data[k]).lower()} is a boolean, not a number (YAML reads "
                        "true/false/yes/no/on/off as booleans): write a number"
                        for k in bad
                    )
                )
        return data


class Autoscaling(_Model):
    min_replicas: int = Field(1, ge=0, le=MAX_REPLICAS, description="Fewest replicas Serve keeps running (<= 1000).")
    max_replicas: int = Field(1, ge=1, le=MAX_REPLICAS, description="Most replicas Serve may start (<= 1000).")
    initial_replicas: int | None = Field(
        None, ge=0, le=MAX_REPLICAS, description="Replicas at deploy time (default: min_replicas)."
    )
    target_ongoing_requests: float = Field(
        8, gt=0, le=100_000, description="Ongoing requests per replica that Serve's autoscaler aims for (<= 100000)."
    )
    upscale_delay_s: float = Field(
        3.0, ge=0, le=86400, description="How long demand must stay high before scaling up (<= 1 day)."
    )
    downscale_delay_s: float = Field(
        30.0, ge=0, le=86400, description="How long demand must stay low before scaling down (<= 1 day)."
    )
    look_back_period_s: float = Field(
        5.0, gt=0, le=86400, description="Window over which Serve averages ongoing requests (<= 1 day)."
    )

    @model_validator(mode="after")
    def _order(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        if self.initial_replicas is not None and not (self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self


class SimEngine(_Model):
    """Knobs of the simulated vLLM-like engine (continuous batching over a paged KV cache)."""

    ttft_ms: float = Field(
        40.0, ge=0, le=600_000, description="Fixed time to first token before prefill cost, per request (<= 10 min)."
    )
    prefill_ms_per_token: float = Field(
        0.05, ge=0, le=1000, description="Extra prefill time per prompt token (<= 1000)."
    )
    itl_ms: float = Field(
        8.0, ge=0, le=60_000, description="Decode step time with a batch of one (inter-token latency; <= 1 min)."
    )
    itl_ms_per_seq: float = Field(
        0.05, ge=0, le=1000, description="Extra decode step time per running sequence in the batch (<= 1000)."
    )
    jitter_frac: float = Field(0.05, ge=0, le=1, description="Seeded multiplicative jitter on step times (0.05 = ±5%).")
    max_num_seqs: int = Field(
        32, ge=1, le=65536, description="Most sequences decoded together (vLLM max_num_seqs; <= 65536)."
    )
    kv_blocks: int = Field(512, ge=1, le=100_000_000, description="KV-cache blocks per replica (<= 1e8).")
    block_size: int = Field(16, ge=1, le=4096, description="Tokens per KV-cache block (<= 4096).")
    slowdown_factor: float = Field(
        1.0, gt=0, le=1000, description="Multiplies every step time: inject a regression on purpose (<= 1000)."
    )
    error_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of requests answered with HTTP 500 (fault injection)."
    )
    seed: int = Field(0, ge=0, lt=2**63, description="Seed for jitter and error injection (0 <= seed < 2^63).")
    startup_error: str | None = Field(
        None,
        max_length=500,
        description="Fault injection: every replica raises this error in its constructor, so "
        "the deploy fails (checks that the replica's exception reaches the user and its logs reach the run folder).",
    )
    coalesce_events: bool = Field(
        False,
        description="Send every token produced since the last write as ONE SSE event (as vLLM merges pending "
        "tokens when its consumer lags) instead of one event per token: exercises per-token ITL.",
    )
    reasoning_tokens: int = Field(
        0,
        ge=0,
        le=MAX_TOKENS,
        description="Reasoning model: the first N generated tokens of every chat reply stream as "
        "`reasoning_content` deltas before the content (capped at max_tokens; usage reports them as "
        "completion_tokens_details.reasoning_tokens). 0: no reasoning.",
    )
    tool_call_probability: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Chat requests with `tools` and tool_choice auto: the fraction (seeded) answered with a tool "
        "call instead of content (1 = always). tool_choice required or a named function always gets one; none never.",
    )
    image_patch_px: int = Field(
        28,
        ge=1,
        le=4096,
        description="Chat image inputs: each image costs ceil(width / image_patch_px) x ceil(height / "
        "image_patch_px) prompt tokens, prefilled like text (28: a 14 px ViT patch merged 2 x 2, as in Qwen2-VL); "
        "usage reports them as prompt_tokens_details.image_tokens.",
    )
    prefix_caching: bool = Field(
        False,
        description="Model a prefix cache: prompt blocks seen before are not prefilled again (their cost is "
        "skipped); replies report usage.prompt_tokens_details.cached_tokens; POST /reset_prefix_cache empties it.",
    )


class VllmEngine(_Model):
    """Real vLLM through Ray Serve LLM (ray.serve.llm): turned into an LLMConfig by harness/deploy/vllm.py."""

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
    tensor_parallel_size: int = Field(1, ge=1, le=256, description="GPUs per replica for tensor parallelism (<= 256).")
    pipeline_parallel_size: int = Field(1, ge=1, le=256, description="Pipeline-parallel stages per replica (<= 256).")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. A100 or L4; none on CPU.")
    device: Literal["cpu", "gpu"] = Field("gpu", description="Where the engine runs: gpu (production) or cpu.")
    stream_batching_interval_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="Ray Serve LLM stream batching; 0 sends every token as produced (true TTFT/ITL).",
    )
    runtime_env_vars: dict[Annotated[str, Field(pattern=_ENV_RE)], str] = Field(
        default_factory=dict, description="Env vars for the engine replicas (names: letters, digits, _)."
    )
    max_model_len: int | None = Field(
        None,
        ge=16,
        le=16 * MAX_TOKENS,
        description="Longest context (prompt + output) in tokens (vLLM max_model_len; default: model's; <= 16 Mi).",
    )
    max_num_seqs: int | None = Field(
        None, ge=1, le=65536, description="Most sequences the engine batches together (vLLM max_num_seqs; <= 65536)."
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
        None,
        ge=1,
        le=65536,
        description="KV-cache size in GiB on CPU (<= 65536) (env VLLM_CPU_KVCACHE_SPACE; device cpu only; default 1 "
        "unless engine_kwargs.kv_cache_memory_bytes sets it in bytes).",
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Serve's cap on requests in flight per replica (default: Ray Serve LLM's, unbounded; <= 1e6).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> VllmEngine:
        own = {
            "max_model_len",
            "max_num_seqs",
            "dtype",
            "enable_prefix_caching",
            "gpu_memory_utilization",
            "tensor_parallel_size",
            "pipeline_parallel_size",
        }
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


class Placement(_Model):
    """Where each sim replica runs, built like Ray Serve LLM builds vLLM's: one bundle per TP x PP rank."""

    device: Literal["gpu", "cpu"] = Field("gpu", description="What each rank holds: one GPU (gpu) or one CPU (cpu).")
    tensor_parallel_size: int = Field(
        1, ge=1, le=64, description="Ranks (GPUs) per pipeline stage of one replica (<= 64)."
    )
    pipeline_parallel_size: int = Field(
        1, ge=1, le=64, description="Pipeline stages per replica (bundles = TP x PP; <= 64)."
    )
    accelerator_type: str | None = Field(
        None, description="Ray accelerator type (e.g. H100): every bundle asks for `accelerator_type:<T>: 0.001`."
    )
    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Placement-group strategy of a replica's bundles (Ray Serve LLM uses PACK)."
    )

    @model_validator(mode="after")
    def _cpu_no_accel(self) -> Placement:
        if self.device == "cpu" and self.accelerator_type:
            raise ValueError("accelerator_type is for device gpu; remove it for device cpu")
        return self


class ClusterSpec(_Model):
    """A local multi-node Ray cluster the harness starts (network namespaces; needs root). Ignored when attaching."""

    workers: int = Field(..., ge=1, le=16, description="Ray worker nodes, each in its own network namespace.")
    gpus_per_worker: int = Field(
        0, ge=0, le=64, description="GPUs each worker node declares to Ray (Ray trusts the count; <= 64)."
    )
    cpus_per_worker: int = Field(2, ge=1, le=256, description="Logical CPUs each worker node declares (<= 256).")
    accelerator_type: str | None = Field(
        None, description="Adds the resource `accelerator_type:<NAME>` to every worker node (e.g. H100)."
    )
    head_cpus: int = Field(
        4, ge=1, le=256, description="Logical CPUs of the head node (Serve controller, proxy; no GPUs; <= 256)."
    )


LORA_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")  # ray.llm LoraConfig.dynamic_lora_loading_path


class Lora(_Model):
    """LoRA adapters on one vLLM model (Ray Serve LLM `LLMConfig.lora_config`; engine vllm only)."""

    dynamic_lora_loading_path: str = Field(
        ...,
        min_length=1,
        description="Where the adapters' weights are (Ray Serve LLM lora_config.dynamic_lora_loading_path: s3://, "
        "gs://, abfss:// or azure://); each adapter is the folder <path>/<adapter name>.",
    )
    max_num_adapters_per_replica: int = Field(
        16, ge=1, le=4096, description="Adapters loaded at once on a replica (lora_config; also vLLM max_loras)."
    )
    max_lora_rank: int | None = Field(None, ge=1, le=4096, description="Largest adapter rank (vLLM max_lora_rank).")
    adapters: list[Annotated[str, Field(pattern=_NAME_RE, max_length=200)]] = Field(
        default_factory=list,
        description="Adapter names the workload may send to, as `<model>:<adapter>` (Ray Serve LLM's LoRA model id).",
    )

    @field_validator("dynamic_lora_loading_path")
    @classmethod
    def _cloud_url(cls, v: str) -> str:
        # Ray Serve LLM refuses other paths only when the app is built, after the cluster and vLLM have started
        if not v.startswith(LORA_SCHEMES):
            raise ValueError(
                f"{v!r} is not a cloud folder: Ray Serve LLM loads LoRA adapters only from "
                f"{', '.join(LORA_SCHEMES)} URLs (a local folder is not supported); upload the adapters there"
            )
        return v


class ServedModel(_Model):
    """One model a multi-model target serves (`target.models`)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$", max_length=200, description="Served model id.")
    sim: SimEngine | None = Field(
        None,
        description="engine sim: this model's own engine knobs; keys not given are taken from target.sim "
        "(e.g. a slower model: {itl_ms: 20}).",
    )
    model_source: str | None = Field(
        None, description="engine vllm: this model's weights (default: target.vllm.model_source)."
    )
    lora: Lora | None = Field(None, description="engine vllm: LoRA adapters served on this model.")


class Target(_Model):
    engine: Literal["sim", "vllm", "external"] = Field(..., description="What serves the load: sim | vllm | external.")
    model: str = Field(
        ...,
        min_length=1,
        description="Served model id (the `model` field of each request). With `models`: the default model "
        "(default: the first of `models`).",
    )
    models: list[ServedModel] = Field(
        default_factory=list,
        description="Several models in one app (engine sim or vllm): one engine per model (per-model sim knobs, "
        "vLLM LLMConfig per model with optional LoRA). Absent: one model, `model`.",
    )
    url: str | None = Field(None, description="Base URL of an OpenAI-compatible endpoint (engine: external).")
    app_name: str = Field("llm", pattern=_NAME_RE, max_length=100, description="Ray Serve application name.")
    route_prefix: str = Field("/", description="Route prefix of the Serve application.")
    api_key_env: str | None = Field(
        None,
        pattern=_ENV_RE,
        description="Name of the env var holding the API key (sent as a Bearer token; never recorded).",
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Serve autoscaling config.")
    replica_cpus: float = Field(0.5, ge=0, le=1024, description="Logical CPUs each replica reserves in Ray (<= 1024).")
    sim: SimEngine | None = Field(None, description="Simulated-engine knobs (engine: sim).")
    vllm: VllmEngine | None = Field(None, description="vLLM settings (engine: vllm).")
    placement: Placement | None = Field(
        None,
        description="engine sim: GPUs/bundles per replica as vLLM on Ray Serve would ask (engine vllm: see vllm:).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("models") and not data.get("model"):
            first = data["models"][0]
            if isinstance(first, dict) and isinstance(first.get("name"), str):
                data = {**data, "model": first["name"]}
        return data

    @model_validator(mode="after")
    def _models(self) -> Target:
        if not self.models:
            return self
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"models: names must be unique, {', '.join(dup)} given twice")
        if self.model not in names:
            raise ValueError(
                f"model {self.model!r} is not one of models ({', '.join(names)}): with `models` the `model` is "
                "the default one; remove it or name one of them"
            )
        if self.engine == "external":
            raise ValueError("models: an external endpoint serves what it serves; list the models in workload.models")
        for i, m in enumerate(self.models):
            if m.sim is not None and self.engine != "sim":
                raise ValueError(f"models[{i}].sim is for engine sim")
            if (m.model_source is not None or m.lora is not None) and self.engine != "vllm":
                raise ValueError(f"models[{i}]: model_source and lora are for engine vllm")
        return self

    def served_models(self) -> list[str]:
        """Model ids requests may name: every served model, and `<model>:<adapter>` for its LoRA adapters."""
        if not self.models:
            return [self.model]
        out = [m.name for m in self.models]
        out += [f"{m.name}:{a}" for m in self.models if m.lora for a in m.lora.adapters]
        return out

    def sim_for(self, name: str) -> SimEngine:
        """One served model's sim knobs: target.sim with the model's own keys on top."""
        base = (self.sim or SimEngine()).model_dump()
        for m in self.models:
            if m.name == name and m.sim is not None:
                base.update(m.sim.model_dump(exclude_unset=True))
        return SimEngine.model_validate(base)

    @model_validator(mode="after")
    def _engine_fields(self) -> Target:
        if self.engine == "external" and not self.url:
            raise ValueError("engine 'external' needs `url` (an OpenAI-compatible base URL)")
        if self.engine == "sim" and self.sim is None:
            self.sim = SimEngine()
        if self.engine == "vllm" and self.vllm is None:
            raise ValueError("engine 'vllm' needs a `vllm:` section with at least `model_source`")
        if self.placement is not None and self.engine != "sim":
            raise ValueError("`placement` is for engine sim (engine vllm: set tensor_parallel_size etc. under `vllm:`)")
        if self.url and self.engine != "external":
            raise ValueError("`url` is only for engine 'external' (sim and vllm are deployed by the harness)")
        return self

    @model_validator(mode="after")
    def _sections_route_url(self) -> Target:
        from harness.urls import url_problem

        for section, engine in (("sim", "sim"), ("vllm", "vllm")):
            if getattr(self, section) is not None and self.engine != engine:
                raise ValueError(
                    f"`{section}:` is for engine {engine!r}; this target is engine {self.engine!r} and would "
                    f"ignore it: remove the section or set engine: {engine}"
                )
        if not self.route_prefix.startswith("/") or re.search(r"[\s?#]", self.route_prefix):
            raise ValueError(
                f"route_prefix {self.route_prefix!r}: must be a URL path starting with '/' (no spaces, ? or #), "
                "e.g. / or /llm"
            )
        if self.url is not None:
            why = url_problem(self.url)
            if why:
                raise ValueError(f"url {self.url!r}: {why}")
        return self


class TokenDist(_Model):
    mean: float = Field(..., gt=0, le=MAX_TOKENS, description="Mean length in tokens (<= 1 Mi).")
    stddev: float = Field(
        0.0, ge=0, le=MAX_TOKENS, description="Standard deviation in tokens (normal, clipped to [min, max])."
    )
    min: int = Field(1, ge=1, le=MAX_TOKENS, description="Shortest length in tokens.")
    max: int | None = Field(None, ge=1, le=MAX_TOKENS, description="Longest length in tokens (<= 1 Mi).")

    @model_validator(mode="after")
    def _range(self) -> TokenDist:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        hi = self.max if self.max is not None else float("inf")
        if not self.min <= self.mean <= hi:
            raise ValueError(
                f"mean ({self.mean:g}) must lie between min ({self.min}) and max ({self.max}): every "
                "length would be clipped to one end"
            )
        return self


class ModelWeight(_Model):
    name: str = Field(..., min_length=1, max_length=200, description="Model id sent in the request's `model` field.")
    weight: float = Field(
        1.0, gt=0, le=1_000_000, description="Relative share of requests (weights need not sum to 1)."
    )


DEFAULT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
DEFAULT_JSON_SCHEMA: dict[str, Any] = {
    "name": "answer",
    "schema": {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer"],
    },
}


class RequestKind(_Model):
    """One kind of chat request in the mix (`workload.request_kinds`)."""

    kind: Literal["plain", "tools", "json_schema"] = Field(
        ...,
        description="plain: messages only; tools: with `tools` and `tool_choice` (a reply that is only a tool call "
        "is a success); json_schema: with `response_format: {type: json_schema}`.",
    )
    weight: float = Field(1.0, gt=0, le=1_000_000, description="Relative share of requests of this kind.")
    name: str | None = Field(
        None,
        pattern=_NAME_RE,
        max_length=100,
        description="Label in samples and reports (default: the kind; tools with a tool_choice other than auto: "
        "tools-<tool_choice>).",
    )
    tools: list[dict[str, Any]] | None = Field(
        None,
        max_length=128,
        description="kind tools: OpenAI tool definitions ({type: function, function: {name, parameters}}); "
        "default: one get_weather function.",
    )
    tool_choice: str = Field(
        "auto",
        min_length=1,
        description="kind tools: auto | required | none | the name of one of the tools (sent as "
        "{type: function, function: {name}}).",
    )
    json_schema: dict[str, Any] | None = Field(
        None,
        description="kind json_schema: the `json_schema` object of response_format ({name, schema}); default: a "
        "small {answer, confidence} object.",
    )

    @model_validator(mode="after")
    def _fields_for_kind(self) -> RequestKind:
        if self.kind != "tools" and (self.tools is not None or self.tool_choice != "auto"):
            raise ValueError(f"tools and tool_choice are for kind tools, not {self.kind}")
        if self.kind != "json_schema" and self.json_schema is not None:
            raise ValueError(f"json_schema is for kind json_schema, not {self.kind}")
        if self.tools is not None:
            names = []
            for i, t in enumerate(self.tools):
                fn = t.get("function") if isinstance(t, dict) else None
                if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise ValueError(
                        f"tools[{i}]: a tool is {{type: function, function: {{name: <str>, parameters: {{...}}}}}}"
                    )
                names.append(fn["name"])
            if not names:
                raise ValueError("tools: empty; give at least one tool, or remove `tools` for the default one")
        else:
            names = [DEFAULT_TOOL["function"]["name"]]
        if self.kind == "tools" and self.tool_choice not in ("auto", "required", "none", *names):
            raise ValueError(
                f"tool_choice {self.tool_choice!r}: use auto, required, none or a tool's name ({', '.join(names)})"
            )
        if self.json_schema is not None and not (
            isinstance(self.json_schema.get("name"), str) and isinstance(self.json_schema.get("schema"), dict)
        ):
            raise ValueError("json_schema: needs `name` (a string) and `schema` (a JSON schema object)")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"tools-{self.tool_choice}" if self.kind == "tools" and self.tool_choice != "auto" else self.kind

    def body_fields(self) -> dict[str, Any]:
        """What this kind adds to a chat request body."""
        if self.kind == "tools":
            tools = self.tools or [DEFAULT_TOOL]
            choice: Any = self.tool_choice
            if choice not in ("auto", "required", "none"):
                choice = {"type": "function", "function": {"name": choice}}
            return {"tools": tools, "tool_choice": choice}
        if self.kind == "json_schema":
            return {"response_format": {"type": "json_schema", "json_schema": self.json_schema or DEFAULT_JSON_SCHEMA}}
        return {}


class Workload(_Model):
    api: Literal["chat", "completions"] = Field("chat", description="OpenAI endpoint: chat or completions.")
    stream: bool = Field(True, description="Stream tokens (SSE); needed for TTFT and ITL.")
    prompt_tokens: TokenDist = Field(default_factory=lambda: TokenDist(mean=128), description="Prompt length.")
    output_tokens: TokenDist = Field(
        default_factory=lambda: TokenDist(mean=64), description="Output length (max_tokens)."
    )
    ignore_eos: bool = Field(True, description="Ask the server to produce exactly max_tokens (vLLM ignore_eos).")
    continuous_usage_stats: bool = Field(
        True,
        description="Ask for usage in every streamed event (stream_options.continuous_usage_stats; vLLM, Ray "
        "Serve LLM and the sim engine support it) to count the tokens each event carries for per-token ITL. Turn off "
        "for servers that reject it; the tokenizer (if on disk) or one token per event is used instead.",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    request_timeout_s: float = Field(
        60.0, gt=0, le=86400, description="Per-request timeout; a timed out request is an error (<= 1 day)."
    )
    seed: int = Field(0, ge=0, lt=2**63, description="Seed for prompt and length sampling (0 <= seed < 2^63).")
    tokenizer: str | None = Field(
        None,
        description="tokenizer.json, or a model directory holding one: synthetic prompts then have exact token "
        "counts (needs the `tokenizers` package). Default: the served model's directory when target.vllm.model_source "
        "is local; otherwise prompt lengths are word-approximate. The record says which.",
    )
    dataset: Dataset | None = Field(None, description="Replay prompts from a JSONL dataset instead of synthetic ones.")
    shared_prefix: SharedPrefix | None = Field(
        None, description="Synthetic prompts that share a few long prefixes (exercises the server's prefix cache)."
    )
    session_turns: int = Field(
        1,
        ge=1,
        le=1000,
        description="Synthetic multi-turn sessions: turns per session; each turn resends the whole history (<= 1000).",
    )
    trace: Trace | None = Field(
        None,
        description="Replay a request trace in open loop: send times and input/output lengths from the trace "
        "(load.stages then give durations only; load.arrival is not used).",
    )
    models: list[ModelWeight] = Field(
        default_factory=list,
        description="Mix requests over several models by weight, e.g. [{name: chat-8b, weight: 3}, {name: code-1b}] "
        "(names from target.models, or <model>:<adapter> for LoRA). Absent: target.model, or the trace's `model` "
        "column when the trace has one.",
    )
    images: Images | None = Field(
        None, description="Image inputs on chat requests (synthetic, a folder or a JSONL of paths); see Images."
    )
    request_kinds: list[RequestKind] = Field(
        default_factory=list,
        description="Mix of chat request kinds by weight, e.g. [{kind: plain, weight: 3}, {kind: tools, "
        "tool_choice: required}]. Absent: plain requests only.",
    )
    correctness: Correctness | None = Field(
        None,
        description="Output correctness probes: fixed prompts sent with greedy decoding (temperature 0, fixed seed) "
        "before the load; run.json keeps each output, its digest and token count (SLOs `outputs.changed == 0` "
        "against `baseline`, `outputs.empty == 0`).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Workload:
        if self.dataset is not None and self.shared_prefix is not None:
            raise ValueError("set either `dataset` or `shared_prefix`, not both")
        if self.dataset is not None and self.session_turns > 1:
            raise ValueError("session_turns is for synthetic prompts; for a dataset set dataset.multi_turn: true")
        if self.trace is not None and (
            self.dataset is not None or self.shared_prefix is not None or self.session_turns > 1
        ):
            raise ValueError(
                "trace gives every request's lengths (and prefixes): remove dataset, shared_prefix and "
                "session_turns, or remove trace"
            )
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"models: {', '.join(dup)} listed twice; give each model once with its weight")
        if self.request_kinds and self.api != "chat":
            raise ValueError("request_kinds (tools, json_schema) are chat requests: set api: chat or remove them")
        if self.images is not None and self.api != "chat":
            raise ValueError(
                "images: image inputs are content parts of chat messages; the completions API has none: "
                "set api: chat or remove images"
            )
        return self

    def model_weights(self, default: str) -> dict[str, float]:
        """Model id → share of requests (sums to 1)."""
        if not self.models:
            return {default: 1.0}
        total = sum(m.weight for m in self.models)
        return {m.name: m.weight / total for m in self.models}


class ImageSize(_Model):
    width: int = Field(..., ge=1, le=16384, description="Image width in pixels (1-16384).")
    height: int = Field(..., ge=1, le=16384, description="Image height in pixels (1-16384).")
    weight: float = Field(1.0, gt=0, le=1_000_000, description="Relative share of images of this size.")


class Images(_Model):
    """`workload.images`: images sent with chat requests as OpenAI `image_url` content parts (data URLs).
    Synthetic (seeded, made with Pillow) unless `folder` or `dataset` names local image files
    (harness/load/images.py). Each distinct image is encoded once, before the load starts."""

    count: int = Field(1, ge=1, le=64, description="Images per image-carrying request (1-64).")
    count_max: int | None = Field(
        None, ge=1, le=64, description="With it, each request carries a seeded uniform count in count..count_max."
    )
    fraction: float = Field(
        1.0, gt=0, le=1, description="Share of requests that carry images; the rest are text-only (0-1]."
    )
    width: int | None = Field(None, ge=1, le=16384, description="Synthetic image width in pixels (with height).")
    height: int | None = Field(None, ge=1, le=16384, description="Synthetic image height in pixels (with width).")
    sizes: list[ImageSize] = Field(
        default_factory=list, description="Synthetic: a weighted size distribution instead of width/height."
    )
    format: Literal["png", "jpeg"] = Field("jpeg", description="Synthetic images' encoding: png or jpeg.")
    quality: int = Field(85, ge=1, le=100, description="JPEG quality (1-100).")
    distinct: int = Field(
        16, ge=1, le=10_000, description="Synthetic: how many different images to make (each encoded once)."
    )
    folder: str | None = Field(None, min_length=1, description="A local folder of image files to send instead.")
    dataset: str | None = Field(
        None,
        min_length=1,
        description="A local JSONL file, one object per line with `image` (a path, relative to the file) or "
        "`images` (a list of paths), to send instead.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Images:
        if self.folder is not None and self.dataset is not None:
            raise ValueError("images: set folder or dataset, not both")
        local = self.folder is not None or self.dataset is not None
        if local and (self.width is not None or self.height is not None or self.sizes):
            raise ValueError("images: width/height/sizes are for synthetic images; a folder or dataset has its own")
        if (self.width is None) != (self.height is None):
            raise ValueError("images: set both width and height (or sizes)")
        if self.sizes and self.width is not None:
            raise ValueError("images: set width/height or sizes, not both")
        if not local and self.width is None and not self.sizes:
            raise ValueError(
                "images: synthetic images need width and height (or sizes), e.g. {width: 512, height: 512}"
            )
        if self.count_max is not None and self.count_max < self.count:
            raise ValueError(f"images.count_max ({self.count_max}) must be >= count ({self.count})")
        return self

    def size_choices(self) -> list[tuple[int, int, float]]:
        if self.sizes:
            return [(s.width, s.height, s.weight) for s in self.sizes]
        return [(int(self.width or 1), int(self.height or 1), 1.0)]


class Correctness(_Model):
    """Greedy probes whose outputs are recorded and compared (`{}` alone: the shipped default prompt set)."""

    prompts: list[Annotated[str, Field(min_length=1, max_length=100_000)]] | None = Field(
        None, min_length=1, max_length=1000, description="The prompts (<= 1000); or `prompts_file`."
    )
    prompts_file: str | None = Field(
        None,
        description="Text file, one prompt per line (blank lines and lines starting with # skipped); relative to "
        "the current folder, the scenario file, or a shipped dataset. Neither this nor `prompts`: the shipped "
        "default set (datasets/correctness-default.txt).",
    )
    max_tokens: int = Field(32, ge=1, le=4096, description="Tokens generated per prompt (<= 4096).")
    seed: int = Field(0, ge=0, lt=2**63, description="Sampling seed sent with each probe (temperature is 0).")
    baseline: str | None = Field(
        None,
        description="A run folder (or its run.json) whose recorded outputs are the reference for "
        "`outputs.changed`; relative paths as for `prompts_file`.",
    )
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Per probe request (<= 1 h).")

    @model_validator(mode="after")
    def _one_source(self) -> Correctness:
        if self.prompts is not None and self.prompts_file is not None:
            raise ValueError("give `prompts` or `prompts_file`, not both")
        return self


class Dataset(_Model):
    """A JSONL file: one JSON object per line."""

    path: str = Field(
        ...,
        min_length=1,
        description="JSONL file: absolute, relative to the current directory, or a "
        "shipped one (e.g. datasets/sharegpt-mini.jsonl).",
    )
    format: Literal["sharegpt", "prompts"] = Field(
        ...,
        description="sharegpt: {conversations: [{from: human|gpt, value}, ...]}; "
        "prompts: {prompt, output_tokens} (output_tokens optional: workload.output_tokens).",
    )
    multi_turn: bool = Field(
        False,
        description="sharegpt: replay each conversation turn by turn as one session (history grows; the "
        "dataset's answers are the history); false: first human turn only.",
    )
    max_items: int | None = Field(None, ge=1, description="Use only the first N lines.")


class Trace(_Model):
    """A request trace replayed in open loop (harness/load/trace.py; formats in datasets/README.md)."""

    path: str = Field(
        ...,
        min_length=1,
        description="Trace file: absolute, relative to the current directory or the "
        "scenario's folder, or a shipped one (e.g. datasets/trace-mooncake-mini.jsonl).",
    )
    format: Literal["mooncake", "azure", "burstgpt", "jsonl"] = Field(
        ...,
        description="mooncake: JSONL {timestamp (ms), input_length, output_length, hash_ids}; azure: CSV "
        "TIMESTAMP, ContextTokens, GeneratedTokens; burstgpt: CSV Timestamp (s), Request tokens, Response tokens, "
        "Model; jsonl: {timestamp_ms, input_tokens, output_tokens, model?, prefix_id?, prefix_tokens?}.",
    )
    speedup: float = Field(
        1.0,
        gt=0,
        le=1_000_000,
        description="Replay this many times faster than recorded (send "
        "offset = trace offset / speedup; 2 = twice the rate).",
    )
    start_s: float = Field(0.0, ge=0, description="Skip the trace's first N seconds (trace time, before speedup).")
    block_tokens: int = Field(
        512,
        ge=1,
        le=MAX_TOKENS,
        description="Tokens per prefix block: mooncake hash_ids "
        "(Mooncake's traces use 512) and jsonl prefix_id blocks.",
    )
    prefix_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS,
        description="jsonl: shared-prefix length of rows with prefix_id and no prefix_tokens of their own.",
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=MAX_USERS,
        description="Most requests in flight; later ones wait for a slot (their lateness is recorded; <= 100000).",
    )


class SharedPrefix(_Model):
    """num_prefixes × suffixes_per_prefix distinct prompts: prefix + suffix (suffix length: workload.prompt_tokens)."""

    num_prefixes: int = Field(
        ..., ge=1, le=100_000, description="Distinct shared prefixes (<= 100000; prompts in all <= 1e6)."
    )
    prefix_tokens: int = Field(..., ge=1, le=MAX_TOKENS, description="Length of each prefix in tokens (<= 1 Mi).")
    suffixes_per_prefix: int = Field(..., ge=1, le=100_000, description="Distinct suffixes per prefix (<= 100000).")

    @model_validator(mode="after")
    def _pool(self) -> SharedPrefix:
        n = self.num_prefixes * self.suffixes_per_prefix
        if n > 1_000_000:  # the pool is built in memory before the load starts (harness/load/prepare.py)
            raise ValueError(f"num_prefixes x suffixes_per_prefix = {n} prompts; at most 1000000 are built up front")
        return self


class Stage(_Model):
    name: str | None = Field(
        None,
        pattern=_NAME_RE,
        max_length=100,
        description="Stage label in reports and SLO scopes (`@name`; letters, digits, _ . -; default: stage<i>; "
        "`@steady` always means the steady part of every stage).",
    )
    duration_s: float = Field(..., gt=0, le=MAX_DURATION_S, description="How long this stage lasts (<= 7 days).")
    users: int | None = Field(
        None, ge=0, le=MAX_USERS, description="Concurrent users (closed loop: each waits for its reply; <= 100000)."
    )
    spawn_rate: float = Field(
        1.0, gt=0, le=10_000, description="Users started (or stopped) per second to reach `users` (<= 10000)."
    )
    rate_rps: float | None = Field(
        None,
        ge=0,
        le=MAX_RATE_RPS,
        description="Open loop (load.arrival set): arrivals per second in this stage (<= 100000; default: "
        "load.arrival.rate_rps). With session_turns/multi_turn an arrival starts a session.",
    )
    ramp_to_rps: float | None = Field(
        None,
        ge=0,
        le=MAX_RATE_RPS,
        description="Open loop: ramp the rate linearly from rate_rps to this by the stage's end (<= 100000).",
    )


class Arrival(_Model):
    """Open-loop arrivals: requests are sent on schedule, whether or not earlier ones have completed."""

    process: Literal["poisson", "gamma", "constant"] = Field(
        "poisson", description="Inter-arrival times: poisson (exponential), gamma (see burstiness), constant."
    )
    rate_rps: float | None = Field(
        None, gt=0, le=MAX_RATE_RPS, description="Arrivals per second for stages without rate_rps (<= 100000)."
    )
    burstiness: float = Field(
        1.0,
        gt=0,
        le=10_000,
        description="gamma (<= 10000): shape of the inter-arrival distribution; 1 = Poisson, < 1 burstier, > 1 more "
        "regular (coefficient of variation 1/sqrt(burstiness)).",
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=MAX_USERS,
        description="Most requests in flight; later arrivals wait for a slot (their lateness is recorded; <= 100000).",
    )


class SaturationRule(_Model):
    """`load.stop_when.saturation`: stop once the server has fallen behind the offered rate for good
    (harness/load/stop.py has the rule). Windows of `window_s` seconds from the load's start; a window is saturated
    when its achieved rate (completions/s) is below (1 - rate_gap) x its offered rate (requests sent/s), the
    requests in flight at its end exceed the previous window's, and its TTFT p50 (from the scheduled arrival) is at
    least (1 + ttft_growth) x the previous window's. `windows` saturated windows in a row stop the run."""

    window_s: float = Field(5.0, ge=1, le=600, description="Length of one detection window in seconds (1-600).")
    windows: int = Field(3, ge=2, le=100, description="Consecutive saturated windows that stop the run (2-100).")
    rate_gap: float = Field(
        0.1, gt=0, lt=1, description="Achieved below (1 - rate_gap) x offered counts as falling behind (0-1)."
    )
    ttft_growth: float = Field(
        0.1, ge=0, le=100, description="TTFT p50 must grow by at least this fraction window on window (<= 100)."
    )
    min_window_requests: int = Field(
        5, ge=1, le=1_000_000, description="A window with fewer requests sent than this is never saturated."
    )


class StopWhen(_Model):
    """`load.stop_when`: end the load early (drain in-flight requests, then judge what was measured)."""

    max_errors: int | str | None = Field(
        None,
        description="Stop at this many failed requests (an integer count since the load started), or at this share "
        "of failed requests over the last errors_window_s (a string like `20%`, with at least "
        "errors_min_requests finished in that window).",
    )
    errors_window_s: float = Field(
        10.0, gt=0, le=3600, description="max_errors as a share: the sliding window it is measured over (<= 1 h)."
    )
    errors_min_requests: int = Field(
        10, ge=1, le=1_000_000, description="max_errors as a share: fewest finished requests in the window to judge."
    )
    saturation: SaturationRule | None = Field(
        None, description="Stop when the server is saturated (`true` or the rule's settings; open loop only)."
    )

    @field_validator("saturation", mode="before")
    @classmethod
    def _saturation_flag(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @field_validator("max_errors")
    @classmethod
    def _max_errors(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, bool):
            raise ValueError("max_errors: a count (e.g. 10) or a share (e.g. `5%`), not a boolean")
        if isinstance(v, int):
            if not 1 <= v <= 1_000_000_000:
                raise ValueError(f"max_errors: a count must lie in 1..1e9, got {v}")
            return v
        if isinstance(v, str):
            m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", v)
            if not m or not 0 < float(m.group(1)) <= 100:
                raise ValueError(f"max_errors: {v!r} is not a share like `5%` (0 < share <= 100%) nor a count")
        return v

    @property
    def max_errors_count(self) -> int | None:
        return self.max_errors if isinstance(self.max_errors, int) else None

    @property
    def max_errors_share(self) -> float | None:
        return float(self.max_errors.strip().rstrip("%")) / 100.0 if isinstance(self.max_errors, str) else None


class Load(_Model):
    warmup_s: float = Field(
        0.0,
        ge=0,
        le=MAX_DURATION_S,
        description="Leading seconds whose samples are excluded from statistics (shorter than the stages).",
    )
    stages: list[Stage] = Field(..., min_length=1, description="Load shape: consecutive stages.")
    max_requests: int | None = Field(
        None, gt=0, le=1_000_000_000, description="Stop after this many requests (bound on the run; <= 1e9)."
    )
    think_time_s: float = Field(0.0, ge=0, le=86400, description="Pause between a user's requests (<= 1 day).")
    workers: int = Field(0, ge=0, le=256, description="Locust worker processes (0: a single local process; <= 256).")
    worker_hosts: Literal["local", "ray"] = Field(
        "local",
        description="Where the Locust workers run: local (forked here) or ray (one Ray actor per worker on "
        "the cluster's nodes, master here; the run folder must be on a filesystem every node shares).",
    )
    worker_nodes: list[str] = Field(
        default_factory=list,
        description="worker_hosts ray: node IPs or worker indexes to place workers on "
        "(round-robin); empty: the non-head nodes.",
    )
    arrival: Arrival | None = Field(
        None, description="Open-loop arrivals at stage rates (rate_rps); absent: closed loop with stage users."
    )
    cooldown_s: float = Field(
        0.0, ge=0, le=MAX_DURATION_S, description="Trailing seconds whose samples are excluded from statistics."
    )
    stop_when: StopWhen | None = Field(
        None,
        description="End the load early: max_errors, saturation (harness/load/stop.py); the run drains, is "
        "recorded as stopped_early and judged on what it measured.",
    )

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages)

    @property
    def open_loop(self) -> bool:
        return self.arrival is not None

    @model_validator(mode="after")
    def _hosts(self) -> Load:
        if self.worker_hosts == "ray" and self.workers < 1:
            raise ValueError("worker_hosts ray needs workers >= 1 (Locust workers to place on the cluster)")
        if self.worker_nodes and self.worker_hosts != "ray":
            raise ValueError("worker_nodes is for worker_hosts ray")
        return self

    @model_validator(mode="after")
    def _bounds(self) -> Load:
        if self.warmup_s + self.cooldown_s >= self.duration_s:
            what = (
                f"warmup_s + cooldown_s ({self.warmup_s + self.cooldown_s})"
                if self.cooldown_s
                else f"warmup_s ({self.warmup_s})"
            )
            raise ValueError(f"{what} must be shorter than the stages ({self.duration_s} s)")
        for i, s in enumerate(self.stages):
            # users missing without arrival: fine only for a trace replay (Scenario._trace_load checks)
            if self.arrival is None and (s.rate_rps is not None or s.ramp_to_rps is not None):
                raise ValueError(
                    f"stages[{i}]: closed loop needs `users` (for open loop with rate_rps set `load.arrival`)"
                )
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

    @model_validator(mode="after")
    def _ramps_fit(self) -> Load:
        """A closed-loop stage whose users cannot all be started (or stopped) at spawn_rate within the stage never
        runs at its users: its load, and any gate on it, is not what the scenario says."""
        if self.arrival is not None:
            return self
        prev = 0
        for i, s in enumerate(self.stages):
            if s.users is None:  # a trace replay: the stages give durations only
                continue
            ramp = abs(s.users - prev) / s.spawn_rate
            if ramp > s.duration_s:
                need = abs(s.users - prev) / s.duration_s
                raise ValueError(
                    f"stages[{i}] ({s.name}): at spawn_rate {s.spawn_rate:g}/s going from {prev} to {s.users} users "
                    f"takes {ramp:g} s, longer than the stage ({s.duration_s:g} s), so it never runs at {s.users} "
                    f"users; set spawn_rate >= {need:.3g} or duration_s >= {ramp:g}"
                )
            prev = s.users
        return self

    @model_validator(mode="after")
    def _honourable(self) -> Load:
        if self.duration_s > MAX_DURATION_S:
            raise ValueError(
                f"the stages last {self.duration_s:g} s in all; at most {MAX_DURATION_S} s (7 days) per run"
            )
        if self.arrival is None and all(s.users == 0 for s in self.stages):
            raise ValueError("every stage has users: 0, so no request would be sent; give a stage users >= 1")
        if self.arrival is not None:
            if all(not s.rate_rps and not s.ramp_to_rps for s in self.stages):
                raise ValueError("every stage has rate_rps 0, so no request would arrive; give a stage rate_rps > 0")
            # ∫ rate dt, rate linear over each stage (harness.load.arrivals schedules the same integral)
            n = sum(
                ((s.rate_rps or 0.0) + (s.ramp_to_rps if s.ramp_to_rps is not None else s.rate_rps or 0.0))
                / 2.0
                * s.duration_s
                for s in self.stages
            )
            cap = MAX_ARRIVALS * max(1, self.workers)
            if n > cap and (self.max_requests is None or self.max_requests > cap):
                raise ValueError(
                    f"the stages schedule ~{n:.3g} arrivals; one load process schedules at most "
                    f"{MAX_ARRIVALS:.0e} (here {cap:.0e}): shorten the stages, lower rate_rps, or set "
                    "max_requests"
                )
        return self


class Fault(_Model):
    """One fault the harness injects during the load (see harness/run/faults.py)."""

    at_s: float = Field(..., ge=0, description="When, in seconds after the load starts (t=0 of the stages).")
    action: Literal["kill_replica", "kill_node", "partition_node"] = Field(
        ...,
        description="kill_replica: ray.kill one or more replica actors; kill_node: SIGKILL a worker node's Ray "
        "processes (local multi-node cluster); partition_node: take a worker's network link down for duration_s.",
    )
    node: str | None = Field(
        None,
        description="kill_node/partition_node: worker index (0, 1, ...), IP or namespace (default: the worker "
        "holding the first replica of the deployment).",
    )
    duration_s: float = Field(
        10.0, gt=0, le=MAX_DURATION_S, description="partition_node: how long the link stays down."
    )
    deployment: str | None = Field(
        None, min_length=1, description="Serve deployment whose replicas are killed (default: the app's only one)."
    )
    count: int = Field(
        1, ge=1, le=MAX_REPLICAS, description="How many replicas to kill at once (<= target.autoscaling.max_replicas)."
    )
    recovery_timeout_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="Longest wait for the replica count to come back (else: no recovery, an SLO fails; <= 1 day).",
    )


class Goodput(_Model):
    """Per-request criteria of a *good* request (as `vllm bench serve --goodput`): it succeeded, met every bound set."""

    ttft_ms: float | None = Field(
        None, gt=0, le=86_400_000, description="Longest time to first token of a good request (<= 1 day)."
    )
    tpot_ms: float | None = Field(
        None, gt=0, le=86_400_000, description="Longest mean time per output token of a good request (<= 1 day)."
    )
    e2e_ms: float | None = Field(
        None, gt=0, le=86_400_000, description="Longest end-to-end latency of a good request (<= 1 day)."
    )
    itl_max_ms: float | None = Field(
        None, gt=0, le=86_400_000, description="Longest single inter-token gap of a good request (<= 1 day)."
    )

    @model_validator(mode="after")
    def _some(self) -> Goodput:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("set at least one of ttft_ms, tpot_ms, e2e_ms, itl_max_ms")
        return self


class Scenario(_Model):
    name: str = Field(
        ...,
        pattern=_NAME_RE,
        max_length=100,
        description="Scenario name (used in run ids and history; <= 100 characters).",
    )
    description: str = Field("", description="What this scenario checks, in a sentence.")
    target: Target = Field(..., description="What is deployed (or reached) and served.")
    workload: Workload = Field(default_factory=Workload, description="What each request looks like.")
    load: Load = Field(..., description="How much load, over how long.")
    slos: list[str] = Field(default_factory=list, description="SLOs like `ttft.p95 <= 500ms`; all must pass.")
    goodput: Goodput | None = Field(
        None,
        description="Criteria of a good request; gives the SLO signals goodput.rate (req/s) and "
        "goodput.attainment (%).",
    )
    scrape: ScrapeSettings = Field(default_factory=lambda: ScrapeSettings(), description="Server-metric scraping.")
    faults: list[Fault] = Field(
        default_factory=list, description="Faults injected during the load, e.g. {at_s: 20, action: kill_replica}."
    )
    cluster: ClusterSpec | None = Field(
        None,
        description="Start a local multi-node cluster (e.g. {workers: 2, gpus_per_worker: 2, accelerator_type: "
        "H100}) instead of the single-node loopback stack.",
    )
    measure_only: bool = Field(
        False,
        description="A run that only measures: no SLOs to judge (`slos:` must be empty). Its summary.json "
        "says verdict `measured` (exit 0) when the load worked, `fail` (exit 1) when it did not (run not completed, "
        "or more than half of the requests failed). Without it a scenario must have SLOs. Same as `harness run "
        "--measure-only`.",
    )

    @model_validator(mode="after")
    def _outputs_slos(self) -> Scenario:
        for i, text in enumerate(self.slos):
            if not text.strip().startswith("outputs."):
                continue
            c = self.workload.correctness
            if c is None:
                raise ValueError(f"slos[{i}]: {text!r} needs `workload.correctness` (the probes it judges)")
            if text.strip().startswith("outputs.changed") and c.baseline is None:
                raise ValueError(
                    f"slos[{i}]: {text!r} needs a baseline: set `workload.correctness.baseline` to the run folder "
                    "whose outputs are the reference (or compare two runs with `harness compare`)"
                )
        return self

    @model_validator(mode="after")
    def _trace_load(self) -> Scenario:
        ld = self.load
        if self.workload.trace is None:
            for i, s in enumerate(ld.stages):
                if ld.arrival is None and s.users is None:
                    raise ValueError(
                        f"load.stages[{i}]: closed loop needs `users` (for open loop with rate_rps set "
                        "`load.arrival`; to replay a trace set `workload.trace`)"
                    )
            return self
        if ld.arrival is not None:
            raise ValueError(
                "load.arrival: workload.trace sets the send times; remove load.arrival (cap requests in "
                "flight with workload.trace.max_concurrency)"
            )
        for i, s in enumerate(ld.stages):
            if s.users is not None or s.rate_rps is not None or s.ramp_to_rps is not None:
                raise ValueError(
                    f"load.stages[{i}]: with workload.trace the stages give durations only (and names); "
                    "remove users / rate_rps / ramp_to_rps"
                )
        return self

    def request_models(self) -> list[str] | None:
        """Model ids this run's requests may name (None: unknown before the trace is read, external target)."""
        if self.workload.models:
            return [m.name for m in self.workload.models]
        if self.workload.trace is not None and self.target.engine == "external":
            return None
        return self.target.served_models()

    @model_validator(mode="after")
    def _models_served(self) -> Scenario:
        t, w = self.target, self.workload
        if t.engine == "external" or not w.models:
            return self
        served = t.served_models()
        bad = [(i, m.name) for i, m in enumerate(w.models) if m.name not in served]
        if bad:
            raise ValueError(
                "; ".join(
                    f"workload.models[{i}].name: {n!r} is not served by the target (served: {', '.join(served)}); "
                    "add it to target.models (or its LoRA adapters) or fix the name"
                    for i, n in bad
                )
            )
        return self

    @model_validator(mode="after")
    def _faults_in_load(self) -> Scenario:
        for i, f in enumerate(self.faults):
            if f.at_s >= self.load.duration_s:
                raise ValueError(f"faults[{i}].at_s ({f.at_s}) must fall inside the load ({self.load.duration_s} s)")
            if self.target.engine == "external":
                raise ValueError(f"faults[{i}]: {f.action} needs a deployed app (engine sim or vllm), not external")
            if f.action != "kill_replica" and self.cluster is None:
                raise ValueError(f"faults[{i}]: {f.action} needs a local multi-node cluster: add a `cluster:` section")
        return self

    @model_validator(mode="after")
    def _honourable(self) -> Scenario:
        for i, f in enumerate(self.faults):
            if f.count > self.target.autoscaling.max_replicas:
                raise ValueError(
                    f"faults[{i}].count ({f.count}) kills more replicas than target.autoscaling.max_replicas "
                    f"({self.target.autoscaling.max_replicas}) can exist"
                )
        points = (self.load.duration_s + 60.0) / self.scrape.step_s  # range queries reach ~30 s before and after
        if points > PROM_MAX_POINTS:
            need = (self.load.duration_s + 60.0) / PROM_MAX_POINTS
            raise ValueError(
                f"scrape.step_s: {self.scrape.step_s:g} s over a {self.load.duration_s:g} s load asks "
                f"Prometheus for {points:.0f} points per series; it answers at most {PROM_MAX_POINTS}: "
                f"set scrape.step_s >= {need:.3g}"
            )
        return self

    @model_validator(mode="after")
    def _stop_when_open_loop(self) -> Scenario:
        sw = self.load.stop_when
        if sw is not None and sw.saturation is not None and self.load.arrival is None and self.workload.trace is None:
            raise ValueError(
                "load.stop_when.saturation: the detector compares the achieved rate with an offered one, which only "
                "open loop has: set load.arrival (stages with rate_rps) or remove saturation"
            )
        if (
            sw is not None
            and sw.saturation is not None
            and sw.saturation.window_s * sw.saturation.windows > (self.load.duration_s)
        ):
            raise ValueError(
                f"load.stop_when.saturation: windows x window_s ({sw.saturation.windows} x "
                f"{sw.saturation.window_s:g} s) is longer than the load ({self.load.duration_s:g} s): it could "
                "never fire; shorten window_s"
            )
        return self

    @model_validator(mode="after")
    def _measure_only_has_no_slos(self) -> Scenario:
        if self.measure_only and self.slos:
            raise ValueError(
                f"measure_only: true, but slos lists {len(self.slos)} SLO(s): remove one of the two "
                "(SLOs to gate on, or measure_only to only measure)"
            )
        return self

    @model_validator(mode="after")
    def _slo_meaning(self) -> Scenario:
        from harness.slo.parse import check_slos  # late: slo imports nothing from here

        names = [s.name for s in self.load.stages if s.name is not None]  # all named by Load's validator
        errs = check_slos(self.slos, names, self.goodput is not None, self.request_models())
        if errs:
            raise ValueError("; ".join(errs))
        return self

    @model_validator(mode="after")
    def _slos_possible(self) -> Scenario:
        """SLOs that can never pass (or never fail) gate nothing: negative thresholds, contradicting bounds on one
        statistic, a scope whose stage lies entirely inside the warmup."""
        from harness.slo.parse import STEADY, parse_slo

        errs: list[str] = []
        bounds: dict[str, list[tuple[float, bool, str]]] = {}
        ends, t = {}, 0.0
        for st in self.load.stages:
            t += st.duration_s
            ends[st.name] = t
        for i, text in enumerate(self.slos):
            try:
                slo = parse_slo(text)
            except ValueError:
                continue  # reported by _slos_parse
            if slo.scope and slo.scope != STEADY and slo.scope in ends and ends[slo.scope] <= self.load.warmup_s:
                errs.append(
                    f"slos[{i}]: {text!r}: stage {slo.scope!r} ends at {ends[slo.scope]:g} s, inside "
                    f"load.warmup_s ({self.load.warmup_s:g} s): it has no measured requests; shorten the warmup"
                )
            lo, hi = bounds.setdefault(slo.key, [(-float("inf"), False, ""), (float("inf"), False, "")])
            if slo.op in (">", ">=", "==") and (slo.threshold, slo.op == ">") > lo[:2]:
                bounds[slo.key][0] = lo = (slo.threshold, slo.op == ">", text)
            if slo.op in ("<", "<=", "==") and (slo.threshold, slo.op != "<") < hi[:2]:
                bounds[slo.key][1] = hi = (slo.threshold, slo.op == "<", text)
            if lo[0] > hi[0] or (lo[0] == hi[0] and (lo[1] or hi[1])):
                errs.append(
                    f"slos[{i}]: {text!r} contradicts {(lo[2] if lo[2] != text else hi[2])!r}: no value meets "
                    "both, so the gate can never pass; keep one"
                )
        if errs:
            raise ValueError("; ".join(errs))
        return self

    @model_validator(mode="after")
    def _slos_have_data(self) -> Scenario:
        """SLOs this scenario alone shows can never have data, never pass or never fail: a fault signal without
        that fault, a replica bound beyond the autoscaling limits, a stage scope inside the cooldown."""
        from harness.slo.parse import STEADY, parse_slo

        actions = {f.action for f in self.faults}
        needs = {"recovery_time": (actions, "a fault (faults: [{at_s: .., action: kill_replica}])")}
        needs["node_down_alert_delay"] = (actions & {"kill_node", "partition_node"}, "a kill_node/partition_node fault")
        a, errs = self.target.autoscaling, []
        starts, t = {}, 0.0
        for st in self.load.stages:
            starts[st.name], t = t, t + st.duration_s
        for i, text in enumerate(self.slos):
            try:
                slo = parse_slo(text)
            except ValueError:
                continue  # reported by _slos_parse
            have, what = needs.get(slo.signal, (True, ""))
            if not have:
                errs.append(f"slos[{i}]: {text!r}: {slo.signal} needs {what}; this scenario has none, so no data")
            never = _replica_bound(slo.signal, slo.op, slo.threshold, a.max_replicas)
            if never and self.target.engine != "external":
                errs.append(f"slos[{i}]: {text!r}: target.autoscaling.max_replicas is {a.max_replicas}, {never}")
            if slo.scope and slo.scope != STEADY and starts.get(slo.scope, -1.0) >= t - self.load.cooldown_s > 0:
                errs.append(
                    f"slos[{i}]: {text!r}: stage {slo.scope!r} starts at {starts[slo.scope]:g} s, inside "
                    f"load.cooldown_s (the last {self.load.cooldown_s:g} s): it has no measured requests"
                )
            if slo.scope == STEADY:
                errs += self._steady_problems(i, text)
        if errs:
            raise ValueError("; ".join(errs))
        return self

    def _steady_problems(self, i: int, text: str) -> list[str]:
        """`@steady` is each stage after its user ramp (users / spawn_rate), after warmup and before cooldown: a
        scenario where that is nowhere, or where a stage is named `steady` itself, gates nothing it means."""
        from harness.slo.autoscaling import stage_windows, steady_windows
        from harness.slo.parse import STEADY

        named = [k for k, st in enumerate(self.load.stages) if st.name == STEADY]
        if named:
            return [
                f"slos[{i}]: {text!r}: load.stages[{named[0]}] is named {STEADY!r}, but @{STEADY} always means the "
                f"steady part of every stage, never that stage; rename the stage (e.g. {STEADY}-load) and scope "
                f"to it with @<new name>, or drop the @{STEADY} scope"
            ]
        stats_end = self.load.duration_s - self.load.cooldown_s
        spans = [
            (a, min(b, stats_end))
            for a, b in steady_windows(stage_windows(self.load.model_dump()["stages"], 0.0), self.load.warmup_s)
            if a < min(b, stats_end)
        ]
        if spans:
            return []
        return [
            f"slos[{i}]: {text!r}: no stage has a steady part: each one's ramp (users / spawn_rate) lasts to its end "
            "or to the end of the warmup or into the cooldown, so @steady never has data; raise spawn_rate, "
            "lengthen the stages or shorten load.warmup_s / cooldown_s"
        ]

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
    step_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="Resolution of range queries (Prometheus answers at most "
        "11000 points per series: step_s >= (load + 60 s) / 11000).",
    )
    settle_timeout_s: float = Field(
        30.0, ge=0, le=3600, description="Longest wait for server counters to stop moving (<= 1 h)."
    )
    settle_quiet_s: float = Field(
        3.0, ge=0, le=3600, description="Counters must be unchanged this long to count as settled (<= 1 h)."
    )


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
        msg += _hint(e)
        if not loc and re.match(r"^[a-z_]+(\[\d+\])?[.:\[ ]", msg):  # a whole-scenario check that names its own path
            lines.append(f"{source}: {msg}")
            continue
        lines.append(f"{source}: {_loc(loc)}: {msg}")
    return lines


def _hint(e: ErrorDetails) -> str:
    """How to fix the errors pydantic words for programmers."""
    t, inp = e["type"], e.get("input")
    if (
        t in ("float_parsing", "int_parsing")
        and isinstance(inp, str)
        and re.fullmatch(r"\s*[-+\d.eE]+\s*[A-Za-z%]+\s*", inp)
    ):
        return "; write the number without a unit (the unit is in the field's name, e.g. duration_s: 10)"
    if t == "string_pattern_mismatch":
        pat = (e.get("ctx") or {}).get("pattern")
        if pat == _NAME_RE:
            return " (letters, digits, _ . - only, starting with a letter or digit)"
        if pat == _ENV_RE:
            return " (an environment variable name: letters, digits and _, not starting with a digit)"
    if t in ("less_than_equal", "less_than"):
        return " (the bound is in the field's description: beyond it no run can honour the value)"
    return ""


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
        raise ScenarioError(
            f"{source}: nested too deeply to be a scenario", fix="see scenarios/smoke.yaml for the layout"
        ) from None


def load_scenario(path: str | Path) -> Scenario:
    from harness.paths import input_file_problem

    p = Path(os.path.expanduser(str(path)))
    bad = input_file_problem(p, allow_dir=True)  # stat only: a FIFO is refused before anything opens it
    if bad is not None and bad[0].startswith("not found"):
        near = resolve_name(str(path))
        if near is None:
            import difflib

            close = difflib.get_close_matches(re.sub(r"\.ya?ml$", "", p.name), [q.stem for q in list_scenarios()], n=1)
            near = resolve_name(close[0]) if close else None
        hint = (
            f"did you mean the shipped scenario `{near.stem}` ({near})? give its name: harness run {near.stem}"
            if near
            else "give a path to a .yaml file, or a name from `harness scenarios list`"
        )
        raise ScenarioError(f"{p}: scenario file not found", fix=hint)
    if bad is not None:
        raise ScenarioError(f"{p}: {bad[0]}", fix=bad[1])
    if p.is_dir():
        raise ScenarioError(f"{p}: is a directory, not a scenario file", fix="give the path of a .yaml file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(
            f"{p}: cannot read the file ({e.__class__.__name__}: {e})", fix="check permissions and encoding (UTF-8)"
        ) from None
    try:
        check_yaml_tree(yaml.compose(text, Loader=yaml.SafeLoader), str(p))  # duplicated keys, alias bombs
        data = yaml.safe_load(text)
    except RecursionError:
        raise ScenarioError(
            f"{p}: YAML nested too deeply", fix="a scenario is a few levels deep; see scenarios/smoke.yaml"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        fix = (
            "indent with spaces: YAML does not allow tabs"
            if "\\t" in problem or "\t" in problem
            else "one scenario per file: remove the second `---` document"
            if "another document" in problem
            else "fix the YAML syntax at that line"
        )
        raise ScenarioError(f"{p}: {where}YAML syntax error: {problem}", fix=fix) from None
    return parse_scenario(data, str(p))


SCENARIO_DIR = asset_dir("scenarios")
SCHEMA_FILE = SCENARIO_DIR / "scenario.schema.json"  # shipped; scenarios name it in a `yaml-language-server` comment
SCHEMA_COMMENT = "# yaml-language-server: $schema="


def scenario_json_schema() -> dict[str, Any]:
    """The scenario file's JSON Schema (draft 2020-12), generated from the pydantic model with every field's
    description, for editors. Cross-field rules (and the SLO grammar) are checked by `harness scenarios validate`."""
    schema = Scenario.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "harness scenario",
        "description": "A harness scenario (`harness run SCENARIO`). Generated by `harness scenarios schema` from "
        "the pydantic model; rules across fields, the SLO grammar and input files are checked by "
        "`harness scenarios validate`.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def scenario_json_schema_text() -> str:
    return json.dumps(scenario_json_schema(), indent=2, ensure_ascii=False) + "\n"


MAX_YAML_NODES = 100_000  # a scenario has a few hundred values; anchors/aliases can make billions ("YAML bomb")


def check_yaml_tree(root: yaml.Node | None, source: str) -> None:
    """Problems plain YAML loading hides: a key given twice in one mapping (the last silently wins, e.g. a second
    `slos:` emptying the gate), and aliases that expand past MAX_YAML_NODES values (or into themselves)."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    problems: list[tuple[int, str]] = []
    size: dict[int, float] = {}  # node id -> values it expands to; an alias is the same node object again

    def children(node) -> list[tuple[Any, Any]]:
        if isinstance(node, MappingNode):
            return [
                (
                    None
                    if k.tag == "tag:yaml.org,2002:merge"
                    else (k.value if isinstance(k, ScalarNode) else f"<{k.id}>"),
                    v,
                )
                for k, v in node.value
            ]
        return list(enumerate(node.value)) if isinstance(node, SequenceNode) else []

    def walk(node, path: tuple) -> float:
        if id(node) in size:  # seen through another alias: its keys were checked, its size is known
            return size[id(node)]
        size[id(node)] = float("inf")  # while inside it: an alias back to it is a cycle
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for k, _ in node.value:
                key = k.value if isinstance(k, ScalarNode) else f"<{k.id}>"
                if k.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: explicit keys override merged ones by design
                    continue
                if key in first:
                    problems.append(
                        (
                            k.start_mark.line,
                            f"{source}: line {k.start_mark.line + 1}: {_loc((*path, key))}: "
                            f"key given twice (first on line {first[key] + 1}); YAML would keep only the last "
                            "one: merge them into one",
                        )
                    )
                else:
                    first[key] = k.start_mark.line
        n = 1.0
        for key, child in children(node):
            n += walk(child, path if key is None else (*path, key))
            if n > MAX_YAML_NODES:
                break
        size[id(node)] = n
        return n

    if root is not None and walk(root, ()) > MAX_YAML_NODES:
        raise ScenarioError(
            f"{source}: the YAML expands to more than {MAX_YAML_NODES} values (anchors and aliases "
            "nested in each other, or an alias inside its own anchor?)",
            fix="write the scenario out without nested aliases; a scenario has a few hundred values",
        )
    if problems:
        raise ScenarioError(f"{source}: duplicated keys", problems=[m for _, m in sorted(problems)])


def list_scenarios(root: Path = SCENARIO_DIR) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml")) if root.exists() else []


def resolve_name(name: str) -> Path | None:
    """`smoke` → scenarios/smoke.yaml when such a shipped scenario exists."""
    stem = re.sub(r"\.ya?ml$", "", Path(name).name)
    for p in list_scenarios():
        if p.stem == stem:
            return p
    return None


def absolute_inputs(sc: Scenario, scenario_file: str | Path | None = None) -> Scenario:
    """The scenario with every local file it names made absolute (children run in other working directories).

    Relative paths are tried against the current directory, the scenario file's folder, then the shipped assets.
    """
    from harness.paths import resolve_input

    base = Path(scenario_file).resolve().parent if scenario_file else None
    data = sc.model_dump(mode="json", exclude_unset=True)
    w = data.get("workload") or {}
    ds = w.get("dataset")
    if ds and ds.get("path"):
        found = resolve_input(ds["path"], relative_to=base, asset="datasets")
        if found is not None:
            ds["path"] = str(found)
    tr = w.get("trace")
    if tr and tr.get("path"):
        found = resolve_input(tr["path"], relative_to=base, asset="datasets")
        if found is not None:
            tr["path"] = str(found)
    for key in ("prompts_file", "baseline"):  # workload.correctness
        c = w.get("correctness") or {}
        if c.get(key):
            found = resolve_input(c[key], relative_to=base, asset="datasets" if key == "prompts_file" else None)
            if found is not None:
                c[key] = str(found)
    if w.get("tokenizer"):
        found = resolve_input(w["tokenizer"], relative_to=base)
        if found is not None:
            w["tokenizer"] = str(found)
    v = (data.get("target") or {}).get("vllm")
    if v and str(v.get("model_source", "")).startswith((".", "~")):
        found = resolve_input(v["model_source"], relative_to=base)
        if found is not None:
            v["model_source"] = str(found)
    return Scenario.model_validate(data)


def looks_like_path(arg: str) -> bool:
    """A separator or a YAML suffix: the user named a file, and only that file will do."""
    return "/" in arg or os.sep in arg or arg.endswith((".yaml", ".yml"))


def resolve_scenario_path(arg: str) -> Path:
    """An existing file; else a bare name of a shipped scenario (`smoke`). A missing *path* stays that path, so
    load_scenario reports it (with the shipped scenario as a hint): never a silent substitute."""
    p = Path(os.path.expanduser(arg))
    if os.path.lexists(p) or looks_like_path(arg):
        return p
    return resolve_name(arg) or p


def _replica_bound(signal: str, op: str, threshold: float, most: int) -> str | None:
    """Why a replica-count bound can never fail or never pass under `max_replicas`, or None."""
    if signal not in ("replicas", "desired_replicas", "target_replicas"):
        return None
    if (op == "<=" and threshold >= most) or (op == "<" and threshold > most):
        return "so the gate can never fail; give a bound below it (or drop the SLO)"
    if (op == ">=" and threshold > most) or (op == ">" and threshold >= most):
        return "so the gate can never pass; raise target.autoscaling.max_replicas or lower the bound"
    return None


def check_judgeable(
    sc: Scenario, source: str = "<scenario>", *, measure_only: bool = False, need_slos: bool = False
) -> None:
    """A run must have SLOs to judge, unless it asked to only measure (`--measure-only` or `measure_only: true`):
    a gate that checks nothing would pass every release."""
    if measure_only and sc.slos:
        raise ScenarioError(
            f"{source}: --measure-only, but the scenario has {len(sc.slos)} SLO(s) to judge",
            fix="drop --measure-only to gate on the SLOs, or remove `slos:` to only measure",
        )
    if need_slos and not sc.slos:
        raise ScenarioError(
            f"{source}: slos: empty; this command searches for the load that meets the SLOs",
            fix="add SLOs, e.g. `slos: [ttft.p95 <= 500ms, error_rate <= 1%]`",
        )
    if not sc.slos and not (measure_only or sc.measure_only):
        raise ScenarioError(
            f"{source}: slos: the scenario has no SLOs, so the run would have nothing to judge (and would pass "
            "whatever happened)",
            fix="add SLOs, e.g. `slos: [ttft.p95 <= 500ms, error_rate <= 1%]`; or, to only measure, run with "
            "--measure-only or set `measure_only: true` (verdict `measured`)",
        )
