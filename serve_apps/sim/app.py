"""The simulated engine as a Ray Serve application speaking the OpenAI API.

    serve run serve_apps.sim.app:build_app model=sim-tiny      # or build_app({...}) from Python

Routes (deployment "SimLLM", FastAPI ingress):
  GET  /health                  200, empty body (like vLLM)
  GET  /v1/models               the served models (one engine per model, each with its own knobs)
  POST /v1/completions          OpenAI completions, streaming (SSE) or not
  POST /v1/chat/completions     OpenAI chat completions, streaming (SSE) or not
  GET  /sim/stats               this replica's engine state and config
  GET  /sim/requests?limit=N    this replica's ground truth for its last N finished requests (Unix times)
                                (&model=<id>: one model's; default: the default model's)

Prompt tokens are estimated as ceil(characters / 4) (at least 1) over the completion prompt or over the
text of all chat messages (no chat-template overhead); a completions `prompt` given as a list of token
ids counts exactly. A load generator wanting N prompt tokens sends 4*N characters. Every generated token
is a 4-character piece of text. The simulated model never emits EOS: it always produces `max_tokens`
tokens and finishes with "length" (so `ignore_eos` is accepted and is in effect always true).

Chat request kinds (OpenAI chat streaming format): with `reasoning_tokens: R` the first min(R, max_tokens) tokens
stream as `delta.reasoning_content` before the content, and usage reports them as
`completion_tokens_details.reasoning_tokens`. A request with `tools` is answered by a tool call when tool_choice is
`required` or names a function, or (tool_choice `auto`) for a seeded `tool_call_probability` share: the tokens after
the reasoning stream as `delta.tool_calls[0].function.arguments` pieces that join into a JSON object, and the reply
finishes with "tool_calls". `response_format` json_object / json_schema makes the content one JSON object.
"""

# No `from __future__ import annotations` here: FastAPI >= 0.137 resolves route annotations against the globals
# of the function Serve's ingress generates, where the string "Request" means nothing, so it became a required
# query parameter and every request got HTTP 422 (ray-project/ray#64475).

import base64
import binascii
import dataclasses
import hashlib
import itertools
import json
import math
import random
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve import Application

from serve_apps.sim.engine import InjectedFault, SimConfig, SimLLMEngine, SimRequest
from serve_apps.sim.metrics import RayEngineMetrics

DEPLOYMENT_NAME = "SimLLM"
CHARS_PER_TOKEN = 4
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
CHAT_DEFAULT_MAX_TOKENS = 256  # capped to what fits the KV cache (vLLM would use max_model_len - prompt)
# 4-character pieces: generated text stays consistent with the chars/token estimate
_VOCAB = (" the", " sim", " ray", " and", " llm", " kv ", " run", " eng", " tok", " ok.")
_VOCAB_JSON = tuple(json.dumps(t) for t in _VOCAB)

# Keys and defaults of harness.scenario.Autoscaling (kept here so replicas need not import harness).
AUTOSCALING_DEFAULTS: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 1,
    "initial_replicas": None,
    "target_ongoing_requests": 8.0,
    "upscale_delay_s": 3.0,
    "downscale_delay_s": 30.0,
    "look_back_period_s": 5.0,
}
ARG_KEYS = {"model", "sim", "autoscaling", "replica_cpus", "placement", "models"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def response(self) -> JSONResponse:
        kind = {400: "BadRequestError", 404: "NotFoundError"}.get(self.status, "InternalServerError")
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}
        return JSONResponse(body, status_code=self.status)


# ---------- request parsing (pure functions) ----------


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def completion_prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return len(prompt)  # token ids: exact
        if len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            return completion_prompt_tokens(prompt[0])
        raise ApiError(400, "batched prompts are not supported by the sim engine: send one prompt", "prompt")
    raise ApiError(400, "`prompt` must be a non-empty string or a list of token ids", "prompt")


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF or JPEG header (no imaging library on the replica); None if unknown."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        return int.from_bytes(raw[6:8], "little"), int.from_bytes(raw[8:10], "little")
    if raw[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(raw):
            if raw[i] != 0xFF:
                return None
            marker, seg = raw[i + 1], int.from_bytes(raw[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: the image's size
                return int.from_bytes(raw[i + 7 : i + 9], "big"), int.from_bytes(raw[i + 5 : i + 7], "big")
            i += 2 + seg
    return None


def image_tokens(part: dict, patch_px: int) -> int:
    """Prompt tokens of one `image_url` content part: ceil(width / patch_px) x ceil(height / patch_px), as vision
    encoders emit one token per (merged) patch (patch_px 28: a 14 px ViT patch merged 2 x 2, as in Qwen2-VL).
    Only data URLs: the sim fetches nothing."""
    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise ApiError(400, "image_url.url must be a base64 data URL (the sim engine fetches nothing)", "messages")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1][:65536], validate=False)  # the header is near the start
    except (ValueError, binascii.Error):
        raise ApiError(400, "image_url.url: invalid base64 data", "messages") from None
    size = image_size(raw)
    if size is None or size[0] < 1 or size[1] < 1:
        raise ApiError(400, "image_url.url: not a PNG, GIF or JPEG image", "messages")
    return math.ceil(size[0] / patch_px) * math.ceil(size[1] / patch_px)


def chat_image_tokens(messages: Any, patch_px: int) -> int:
    n = 0
    for m in messages if isinstance(messages, list) else []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list):
            n += sum(image_tokens(x, patch_px) for x in c if isinstance(x, dict) and x.get("type") == "image_url")
    return n


def chat_prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list", "messages")
    chars = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ApiError(400, f"messages[{i}] must be an object with a `role`", "messages")
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):  # content parts: count the text ones
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
        elif content is not None:
            raise ApiError(400, f"messages[{i}].content must be a string or a list of parts", "messages")
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def prompt_text(body: dict, *, chat: bool) -> str:
    """The prompt's text as the prefix cache sees it (chat: the messages' text contents joined in order)."""
    if not chat:
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else json.dumps(prompt)
    parts = []
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list):
            c = "".join(x.get("text", "") for x in c if isinstance(x, dict))
        parts.append(f"{m.get('role') if isinstance(m, dict) else ''}:{c or ''}")
    return "\n".join(parts)


def prefix_keys(text: str, block_size: int) -> list[int]:
    """Chained hashes of the prompt's full blocks (block_size tokens of CHARS_PER_TOKEN characters each)."""
    step = block_size * CHARS_PER_TOKEN
    keys, h = [], 0
    for i in range(0, len(text) - step + 1, step):
        h = hash((h, text[i : i + step]))
        keys.append(h)
    return keys


def _int_field(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ApiError(400, f"`{name}` must be an integer >= 1, got {v!r}", name)
    return v


@dataclasses.dataclass
class ParsedRequest:
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool
    continuous_usage: bool = False  # usage in every event (vLLM's stream_options.continuous_usage_stats)
    model: str = ""
    tools: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, argument key) per tool
    tool_choice: str | None = None  # auto | none | required | a tool's name (None: no tools)
    json_format: bool = False  # response_format json_object / json_schema: the content is one JSON object
    prefix_keys: list[int] = dataclasses.field(default_factory=list)  # filled when prefix caching is on
    image_tokens: int = 0  # of prompt_tokens: the images' (image_url content parts)


def _parse_tools(body: dict) -> tuple[list[tuple[str, str]], str | None]:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None:
        if choice not in (None, "none"):
            raise ApiError(400, "When using `tool_choice`, `tools` must be set.", "tool_choice")
        return [], None
    if not isinstance(tools, list) or not tools:
        raise ApiError(400, "`tools` must be a non-empty list", "tools")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise ApiError(400, f"tools[{i}] must be {{type: function, function: {{name, parameters}}}}", "tools")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, f"tools[{i}].function.name must be a non-empty string", "tools")
        params: dict = fn["parameters"] if isinstance(fn.get("parameters"), dict) else {}
        props: dict = params["properties"] if isinstance(params.get("properties"), dict) else {}
        req = [r for r in params.get("required") or [] if isinstance(r, str)]
        out.append((name, (req or list(props) or ["input"])[0]))
    names = [n for n, _ in out]
    if choice is None:
        choice = "auto"
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if name not in names:
            raise ApiError(400, f"tool_choice names function {name!r}, which is not in `tools`", "tool_choice")
        choice = name
    elif choice not in ("auto", "none", "required"):
        raise ApiError(400, "`tool_choice` must be auto, none, required or {type: function, ...}", "tool_choice")
    return out, choice


def _json_format(body: dict) -> bool:
    rf = body.get("response_format")
    if rf is None:
        return False
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise ApiError(400, "`response_format.type` must be text, json_object or json_schema", "response_format")
    if kind == "json_schema" and not isinstance(rf.get("json_schema"), dict):
        raise ApiError(400, "`response_format.json_schema` must be an object {name, schema}", "response_format")
    return kind != "text"


def parse_request(
    body: Any,
    *,
    chat: bool,
    served_model: str,
    kv_capacity: int,
    served: tuple[str, ...] = (),
    image_patch_px: int = 28,
) -> ParsedRequest:
    """`served`: every model id this app serves (default: only `served_model`, also the default model)."""
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    model = body.get("model", served_model)
    if model not in (served or (served_model,)):
        raise ApiError(404, f"The model `{model}` does not exist.", "model")
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n=1 is supported by the sim engine", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "`stream` must be a boolean", "stream")
    opts = body.get("stream_options")
    if opts is not None and not stream:
        raise ApiError(400, "Stream options can only be defined when `stream=True`.", "stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise ApiError(400, "`stream_options` must be an object", "stream_options")
    include_usage = bool(opts and opts.get("include_usage"))
    # vLLM: only together with include_usage
    continuous = include_usage and bool(opts and opts.get("continuous_usage_stats"))

    if chat:
        prompt_tokens = chat_prompt_tokens(body.get("messages"))
        images = chat_image_tokens(body.get("messages"), image_patch_px)
        prompt_tokens += images
        max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens")
        if max_tokens is None:
            max_tokens = max(1, min(CHAT_DEFAULT_MAX_TOKENS, kv_capacity - prompt_tokens))
    else:
        prompt_tokens = completion_prompt_tokens(body.get("prompt"))
        images = 0
        max_tokens = _int_field(body, "max_tokens") or COMPLETIONS_DEFAULT_MAX_TOKENS
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise ApiError(400, "`ignore_eos` must be a boolean", "ignore_eos")
    tools, choice = _parse_tools(body) if chat else ([], None)
    return ParsedRequest(
        prompt_tokens,
        max_tokens,
        stream,
        include_usage,
        continuous,
        model,
        tools,
        choice,
        chat and _json_format(body),
        image_tokens=images,
    )


@dataclasses.dataclass(frozen=True)
class ReplyPlan:
    """What each generated token of one reply is: reasoning (indices < reasoning), then content or one tool call."""

    max_tokens: int
    reasoning: int = 0
    tool: tuple[str, str] | None = None  # (function name, argument key): the reply is a tool call
    json_key: str | None = None  # content (or tool arguments) is the JSON object {json_key: "<text>"}
    offset: int = 0  # where in the vocabulary the reply starts: a function of (seed, prompt), see text_offset

    @property
    def plain(self) -> bool:
        return not self.reasoning and self.tool is None and self.json_key is None

    def kind(self, i: int) -> str:
        """r (reasoning_content), c (content) or t (tool_calls arguments) for token i."""
        if i < self.reasoning:
            return "r"
        return "t" if self.tool is not None else "c"

    def text(self, i: int) -> str:
        piece = _VOCAB[(self.offset + i) % len(_VOCAB)]
        if self.json_key is None or i < self.reasoning:
            return piece
        if i == self.reasoning:
            piece = "{" + json.dumps(self.json_key) + ":" + '"' + piece
        if i == self.max_tokens - 1:
            piece += '"}'
        return piece

    def reasoning_done(self, n: int) -> int:
        return min(self.reasoning, n)


def text_offset(seed: int, prompt: str) -> int:
    """The reply's text is the vocabulary from this offset on: the same (seed, prompt) always gives the same reply
    (what a greedy engine does), another seed or prompt usually another one (output-correctness checks see it)."""
    h = hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % len(_VOCAB)


def reply_plan(p: ParsedRequest, cfg: SimConfig, rng: random.Random, chat: bool, offset: int = 0) -> ReplyPlan:
    """Seeded decision of the reply's shape (see the module docstring)."""
    if not chat:
        return ReplyPlan(p.max_tokens, offset=offset)
    tool = None
    if p.tools and p.tool_choice != "none":
        if p.tool_choice == "required":
            tool = p.tools[0]
        elif p.tool_choice == "auto":
            if cfg.tool_call_probability and rng.random() < cfg.tool_call_probability:
                tool = p.tools[0]
        else:
            tool = next(t for t in p.tools if t[0] == p.tool_choice)
    reasoning = min(cfg.reasoning_tokens, p.max_tokens - (1 if tool else 0))
    key = tool[1] if tool else ("answer" if p.json_format else None)
    return ReplyPlan(p.max_tokens, reasoning, tool, key, offset)


def autoscaling_config(a: dict | None) -> dict:
    """harness.scenario.Autoscaling (as a dict) -> Serve autoscaling_config."""
    a = dict(a or {})
    unknown = sorted(set(a) - set(AUTOSCALING_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown autoscaling setting(s) {unknown}; known: {sorted(AUTOSCALING_DEFAULTS)}")
    a = {**AUTOSCALING_DEFAULTS, **a}
    cfg = {
        k: a[k]
        for k in (
            "min_replicas",
            "max_replicas",
            "target_ongoing_requests",
            "upscale_delay_s",
            "downscale_delay_s",
            "look_back_period_s",
        )
    }
    # Serve's default (10 s) is too coarse for short benchmark stages
    cfg["metrics_interval_s"] = min(1.0, float(a["look_back_period_s"]))
    if a["initial_replicas"] is not None:
        cfg["initial_replicas"] = a["initial_replicas"]
    return cfg


def max_ongoing_requests(sim: SimConfig, autoscaling: dict) -> int:
    # high enough that requests queue in the engine (visible as num_requests_waiting), not in Serve
    return max(2 * sim.max_num_seqs, 64, math.ceil(2 * float(autoscaling["target_ongoing_requests"])))


# ---------- the deployment ----------

api = FastAPI(title="harness sim LLM", docs_url=None, redoc_url=None)


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (tests)
        return ""


class _Served:
    """One served model inside a replica: its own engine (knobs, batch, KV cache), metrics and tool-call RNG."""

    def __init__(self, name: str, config: SimConfig, replica_id: str) -> None:
        self.name = name
        self.config = config
        self.metrics = RayEngineMetrics(name, replica_id)
        self.engine = SimLLMEngine(config, observer=self.metrics)
        self.rng = random.Random(f"tools-{config.seed}-{name}")
        self.json = json.dumps(name)


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class SimLLM:
    def __init__(
        self, model: str, sim: dict, placement: dict | None = None, models: dict[str, dict] | None = None
    ) -> None:
        """`models`: model id → its sim knobs, for several models (the first, or `model`, is the default)."""
        self.model = model
        configs = {name: SimConfig.from_dict(cfg) for name, cfg in (models or {model: sim}).items()}
        self.config = configs.get(model) or SimConfig.from_dict(sim)
        for c in configs.values():
            if c.startup_error:
                raise RuntimeError(f"sim startup_error: {c.startup_error}")
        self.replica_id = _replica_id()
        self.placement: list[dict] = []
        if placement:  # hold one device per bundle like vLLM's workers (kept alive by this replica)
            from serve_apps.sim.placement import start_ranks

            self._ranks, self.placement = start_ranks(placement, self.replica_id)
        self.served = {name: _Served(name, c, self.replica_id) for name, c in configs.items()}
        self._names = tuple(self.served)
        default = self.served.get(model) or next(iter(self.served.values()))
        self.metrics, self.engine = default.metrics, default.engine
        self.created = int(time.time())
        self._ids = itertools.count()
        self._model_json = json.dumps(model)
        # series should exist from startup, like vLLM's; if the constructor runs without a loop,
        # the first health check or request starts the flusher instead
        self._start_metrics()

    def _start_metrics(self) -> None:
        for m in self.served.values():
            m.metrics.start()

    async def check_health(self) -> None:
        self._start_metrics()
        for m in self.served.values():
            task = m.engine._task
            if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"sim engine scheduler of {m.name} died: {task.exception()!r}")

    @api.get("/health")
    async def health(self) -> Response:
        return Response(status_code=200)

    @api.get("/v1/models")
    async def models(self) -> JSONResponse:
        cards = [
            {
                "id": m.name,
                "object": "model",
                "created": self.created,
                "owned_by": "harness-sim",
                "root": m.name,
                "parent": None,
                "max_model_len": m.config.kv_capacity_tokens,
            }
            for m in self.served.values()
        ]
        return JSONResponse({"object": "list", "data": cards})

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._handle(request, chat=False)

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._handle(request, chat=True)

    @api.get("/sim/stats")
    async def sim_stats(self) -> JSONResponse:
        return JSONResponse(
            {
                "model": self.model,
                "replica_id": self.replica_id,
                "config": dataclasses.asdict(self.config),
                "engine": self.engine.stats(),
                "placement": self.placement,
                "models": {
                    m.name: {"config": dataclasses.asdict(m.config), "engine": m.engine.stats()}
                    for m in self.served.values()
                },
            }
        )

    def reset_prefix_cache(self) -> dict:
        """Empty this replica's prefix cache (callable through a Serve handle, e.g. broadcast to every replica)."""
        dropped = sum(m.engine.reset_prefix_cache() for m in self.served.values())  # every served model's engine
        return {"replica_id": self.replica_id, "dropped_blocks": dropped}

    @api.post("/reset_prefix_cache")
    async def reset_prefix_cache_route(self) -> JSONResponse:
        """vLLM's dev-mode route: resets the replica that answers (one replica; a Serve handle reaches all)."""
        return JSONResponse(self.reset_prefix_cache())

    @api.get("/sim/requests")
    async def sim_requests(self, limit: int = 100, model: str = "") -> JSONResponse:
        m = self.served.get(model or self.model)
        if m is None:
            return ApiError(404, f"The model `{model}` does not exist.", "model").response()
        hist = list(m.engine.history)[-max(0, limit) :] if limit > 0 else []
        off = m.engine.wall_offset
        return JSONResponse(
            {"replica_id": self.replica_id, "model": m.name, "requests": [r.to_dict(off) for r in hist]}
        )

    # ----- request path -----

    async def _handle(self, request: Request, *, chat: bool) -> Response:
        self._start_metrics()
        try:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "request body is not valid JSON") from None
            name = body.get("model", self.model) if isinstance(body, dict) else self.model
            m = self.served.get(name) if isinstance(name, str) else None
            cfg = (m or self.served[self._names[0]]).config
            p = parse_request(
                body,
                chat=chat,
                served_model=self.model,
                kv_capacity=cfg.kv_capacity_tokens,
                served=self._names,
                image_patch_px=cfg.image_patch_px,
            )
            m = self.served[p.model]
            plan = reply_plan(p, m.config, m.rng, chat, text_offset(m.config.seed, prompt_text(body, chat=chat)))
            rid = f"{self.replica_id or 'sim'}-{next(self._ids)}"
            if m.config.prefix_caching:
                p.prefix_keys = prefix_keys(prompt_text(body, chat=chat), m.config.block_size)
            try:
                req = m.engine.submit(
                    p.prompt_tokens,
                    p.max_tokens,
                    request_id=rid,
                    prefix_keys=p.prefix_keys,
                    image_tokens=p.image_tokens,
                )
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            except InjectedFault as e:
                raise ApiError(500, str(e)) from None
        except ApiError as e:
            return e.response()
        if p.stream:
            return StreamingResponse(
                self._sse(m, req, p, chat, plan),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Request-Id": rid},
            )
        return await self._full(m, req, p, chat, plan)

    def _usage(
        self,
        p: ParsedRequest,
        n: int,
        plan: ReplyPlan | None = None,
        req: SimRequest | None = None,
        m: _Served | None = None,
    ) -> dict:
        u: dict[str, Any] = {
            "prompt_tokens": p.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": p.prompt_tokens + n,
        }
        if plan is not None and plan.reasoning:
            u["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_done(n)}
        if req is not None and (m.config if m is not None else self.config).prefix_caching:  # vLLM's field for hits
            u["prompt_tokens_details"] = {"cached_tokens": req.cached_tokens}
        if p.image_tokens:  # not an OpenAI field: the share of prompt_tokens the images took (ground truth)
            u.setdefault("prompt_tokens_details", {})["image_tokens"] = p.image_tokens
        return u

    async def _full(self, m: _Served, req: SimRequest, p: ParsedRequest, chat: bool, plan: ReplyPlan) -> JSONResponse:
        parts: dict[str, list[str]] = {"r": [], "c": [], "t": []}
        n = 0
        async with aclosing(m.engine.stream(req)) as tokens:
            async for i in tokens:
                parts[plan.kind(i)].append(plan.text(i))
                n += 1
        finish = "tool_calls" if plan.tool is not None and parts["t"] else "length"
        if chat:
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(parts["c"]) if parts["c"] else None}
            if parts["r"]:
                msg["reasoning_content"] = "".join(parts["r"])
            if plan.tool is not None and parts["t"]:
                msg["tool_calls"] = [
                    {
                        "id": "call_" + req.request_id,
                        "type": "function",
                        "function": {"name": plan.tool[0], "arguments": "".join(parts["t"])},
                    }
                ]
            choice = {"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}
            obj, prefix = "chat.completion", "chatcmpl-"
        else:
            choice = {"index": 0, "text": "".join(parts["c"]), "logprobs": None, "finish_reason": "length"}
            obj, prefix = "text_completion", "cmpl-"
        return JSONResponse(
            {
                "id": prefix + req.request_id,
                "object": obj,
                "created": int(time.time()),
                "model": m.name,
                "choices": [choice],
                "usage": self._usage(p, n, plan, req, m),
            }
        )

    async def _sse(
        self, m: _Served, req: SimRequest, p: ParsedRequest, chat: bool, plan: ReplyPlan
    ) -> AsyncIterator[str]:
        # events are assembled from pre-serialised pieces: no json.dumps per token on the plain path
        created = int(time.time())
        if chat:
            obj, rid = "chat.completion.chunk", "chatcmpl-" + req.request_id
        else:
            obj, rid = "text_completion", "cmpl-" + req.request_id
        head = f'data: {{"id":"{rid}","object":"{obj}","created":{created},"model":{m.json},"choices":[{{"index":0,'
        if chat:
            first, later = head + '"delta":{"role":"assistant","content":', head + '"delta":{"content":'
        else:
            first = later = head + '"text":'
        close = "}" if chat else ""  # the delta object
        mid = close + ',"logprobs":null,"finish_reason":null}]}\n\n'
        last_tail = close + ',"logprobs":null,"finish_reason":"length"}]}\n\n'
        if plan.tool is not None:
            last_tail = last_tail.replace('"length"', '"tool_calls"')
        if p.continuous_usage:  # cumulative usage in every event, as vLLM's continuous_usage_stats
            mid, last_tail = (t.replace("}]}\n\n", '}],"usage":{usage}}\n\n') for t in (mid, last_tail))
        last = p.max_tokens - 1
        vocab, nv = _VOCAB_JSON, len(_VOCAB_JSON)
        coalesce = m.config.coalesce_events
        n = 0

        def tail(kind: str, done: int) -> str:
            if not p.continuous_usage:
                return kind
            u = json.dumps(self._usage(p, done, plan, req, m), separators=(",", ":"))
            return kind.replace("{usage}", u)

        def event(kind: str, text: str, start: int, stop: int) -> str:
            """One chat event carrying tokens [start, stop) of one kind (reasoning, content, tool call)."""
            role = '"role":"assistant",' if start == 0 else ""
            if kind == "r":
                delta = '"delta":{' + role + '"reasoning_content":' + json.dumps(text)
            elif kind == "c":
                delta = '"delta":{' + role + '"content":' + json.dumps(text)
            else:
                fn = '"function":{"arguments":' + json.dumps(text) + "}"
                if start == plan.reasoning and plan.tool is not None:  # the call's first delta names it
                    name = json.dumps(plan.tool[0])
                    fn = f'"id":"call_{req.request_id}","type":"function","function":{{"name":{name},"arguments":'
                    fn += json.dumps(text) + "}"
                delta = '"delta":{' + role + '"tool_calls":[{"index":0,' + fn + "}]"
            return head + delta + tail(last_tail if stop - 1 == last else mid, stop)

        async with aclosing(m.engine.stream_ranges(req)) as ranges:
            async for start, stop in ranges:
                if not plan.plain:  # reasoning / tool call / JSON content: split the range at kind changes
                    out, i = [], start
                    while i < stop:
                        k = plan.kind(i)
                        j = i + 1
                        while j < stop and (coalesce and plan.kind(j) == k):
                            j += 1
                        out.append(event(k, "".join(plan.text(x) for x in range(i, j)), i, j))
                        i = j
                    yield "".join(out)
                elif coalesce:  # one event carrying every token produced since the last write
                    text = "".join(_VOCAB[(plan.offset + i) % len(_VOCAB)] for i in range(start, stop))
                    yield (
                        (first if start == 0 else later)
                        + json.dumps(text)
                        + tail(last_tail if stop - 1 == last else mid, stop)
                    )
                else:  # everything already produced goes out as one write (several SSE events)
                    yield "".join(
                        (first if i == 0 else later)
                        + vocab[(plan.offset + i) % nv]
                        + tail(last_tail if i == last else mid, i + 1)
                        for i in range(start, stop)
                    )
                n = stop
        end = "data: [DONE]\n\n"
        if p.include_usage:
            usage = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": m.name,
                "choices": [],
                "usage": self._usage(p, n, plan, req, m),
            }
            end = f"data: {json.dumps(usage, separators=(',', ':'))}\n\n" + end
        yield end


def build_app(args: dict) -> Application:
    """args: {"model": str, "sim": SimEngine dict, "autoscaling": Autoscaling dict, "replica_cpus": float,
    "placement": dict, "models": {model id: SimEngine dict} (several models; optional)}."""
    args = dict(args or {})
    unknown = sorted(set(args) - ARG_KEYS)
    if unknown:
        raise ValueError(f"unknown build_app arg(s) {unknown}; known: {sorted(ARG_KEYS)}")
    model = args.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("build_app needs `model` (the served model id)")
    sim = SimConfig.from_dict(args.get("sim"))
    models = args.get("models") or None  # model id → sim knobs (several models in one app)
    if models is not None:
        if not isinstance(models, dict) or model not in models:
            raise ValueError("build_app `models` must map model ids to sim knobs and include `model`")
        configs = [SimConfig.from_dict(c) for c in models.values()]
        # every model's batch can be full at once
        sim = dataclasses.replace(sim, max_num_seqs=sum(c.max_num_seqs for c in configs))
    autoscaling = autoscaling_config(args.get("autoscaling"))
    replica_cpus = float(args.get("replica_cpus", 0.5))
    from serve_apps.sim.placement import deployment_options

    placement = args.get("placement") or None
    # the decorators' stubs leave SimLLM typed as the plain class; at runtime it is a serve Deployment
    return SimLLM.options(  # type: ignore[attr-defined]
        autoscaling_config=autoscaling,
        max_ongoing_requests=max_ongoing_requests(sim, autoscaling),
        **deployment_options(placement, replica_cpus),
    ).bind(model, dataclasses.asdict(SimConfig.from_dict(args.get("sim"))), placement, models)


app_builder = build_app
