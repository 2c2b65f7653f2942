"""The simulated engine as a Ray Serve application speaking the OpenAI API.

    serve run serve_apps.sim.app:build_app model=sim-tiny      # or build_app({...}) from Python

Routes (deployment "SimLLM", FastAPI ingress):
  GET  /health                  200, empty body (like vLLM)
  GET  /v1/models               the one served model
  POST /v1/completions          OpenAI completions, streaming (SSE) or not
  POST /v1/chat/completions     OpenAI chat completions, streaming (SSE) or not
  GET  /sim/stats               this replica's engine state and config
  GET  /sim/requests?limit=N    this replica's ground truth for its last N finished requests (Unix times)

Prompt tokens are estimated as ceil(characters / 4) (at least 1) over the completion prompt or over the
text of all chat messages (no chat-template overhead); a completions `prompt` given as a list of token
ids counts exactly. A load generator wanting N prompt tokens sends 4*N characters. Every generated token
is a 4-character piece of text. The simulated model never emits EOS: it always produces `max_tokens`
tokens and finishes with "length" (so `ignore_eos` is accepted and is in effect always true).
"""

# No `from __future__ import annotations` here: FastAPI >= 0.137 resolves route annotations against the globals
# of the function Serve's ingress generates, where the string "Request" means nothing, so it became a required
# query parameter and every request got HTTP 422 (ray-project/ray#64475).

import dataclasses
import itertools
import json
import math
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
ARG_KEYS = {"model", "sim", "autoscaling", "replica_cpus", "placement"}


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


def parse_request(body: Any, *, chat: bool, served_model: str, kv_capacity: int) -> ParsedRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
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
    continuous = include_usage and bool(opts.get("continuous_usage_stats"))  # vLLM: only together with include_usage

    if chat:
        prompt_tokens = chat_prompt_tokens(body.get("messages"))
        max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens")
        if max_tokens is None:
            max_tokens = max(1, min(CHAT_DEFAULT_MAX_TOKENS, kv_capacity - prompt_tokens))
    else:
        prompt_tokens = completion_prompt_tokens(body.get("prompt"))
        max_tokens = _int_field(body, "max_tokens") or COMPLETIONS_DEFAULT_MAX_TOKENS
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise ApiError(400, "`ignore_eos` must be a boolean", "ignore_eos")
    return ParsedRequest(prompt_tokens, max_tokens, stream, include_usage, continuous)


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


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class SimLLM:
    def __init__(self, model: str, sim: dict, placement: dict | None = None) -> None:
        self.model = model
        self.config = SimConfig.from_dict(sim)
        if self.config.startup_error:
            raise RuntimeError(f"sim startup_error: {self.config.startup_error}")
        self.replica_id = _replica_id()
        self.placement: list[dict] = []
        if placement:  # hold one device per bundle like vLLM's workers (kept alive by this replica)
            from serve_apps.sim.placement import start_ranks

            self._ranks, self.placement = start_ranks(placement, self.replica_id)
        self.metrics = RayEngineMetrics(model, self.replica_id)
        self.engine = SimLLMEngine(self.config, observer=self.metrics)
        self.created = int(time.time())
        self._ids = itertools.count()
        self._model_json = json.dumps(model)
        # series should exist from startup, like vLLM's; if the constructor runs without a loop,
        # the first health check or request starts the flusher instead
        self.metrics.start()

    async def check_health(self) -> None:
        self.metrics.start()
        task = self.engine._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"sim engine scheduler died: {task.exception()!r}")

    @api.get("/health")
    async def health(self) -> Response:
        return Response(status_code=200)

    @api.get("/v1/models")
    async def models(self) -> JSONResponse:
        card = {
            "id": self.model,
            "object": "model",
            "created": self.created,
            "owned_by": "harness-sim",
            "root": self.model,
            "parent": None,
            "max_model_len": self.config.kv_capacity_tokens,
        }
        return JSONResponse({"object": "list", "data": [card]})

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
            }
        )

    @api.get("/sim/requests")
    async def sim_requests(self, limit: int = 100) -> JSONResponse:
        hist = list(self.engine.history)[-max(0, limit) :] if limit > 0 else []
        off = self.engine.wall_offset
        return JSONResponse({"replica_id": self.replica_id, "requests": [r.to_dict(off) for r in hist]})

    # ----- request path -----

    async def _handle(self, request: Request, *, chat: bool) -> Response:
        self.metrics.start()
        try:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "request body is not valid JSON") from None
            p = parse_request(body, chat=chat, served_model=self.model, kv_capacity=self.config.kv_capacity_tokens)
            rid = f"{self.replica_id or 'sim'}-{next(self._ids)}"
            try:
                req = self.engine.submit(p.prompt_tokens, p.max_tokens, request_id=rid)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            except InjectedFault as e:
                raise ApiError(500, str(e)) from None
        except ApiError as e:
            return e.response()
        if p.stream:
            return StreamingResponse(
                self._sse(req, p, chat),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Request-Id": rid},
            )
        return await self._full(req, p, chat)

    def _usage(self, p: ParsedRequest, n: int) -> dict:
        return {"prompt_tokens": p.prompt_tokens, "completion_tokens": n, "total_tokens": p.prompt_tokens + n}

    async def _full(self, req: SimRequest, p: ParsedRequest, chat: bool) -> JSONResponse:
        pieces: list[str] = []
        async with aclosing(self.engine.stream(req)) as tokens:
            async for i in tokens:
                pieces.append(_VOCAB[i % len(_VOCAB)])
        text = "".join(pieces)
        n = len(pieces)
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "length",
            }
            obj, prefix = "chat.completion", "chatcmpl-"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            obj, prefix = "text_completion", "cmpl-"
        return JSONResponse(
            {
                "id": prefix + req.request_id,
                "object": obj,
                "created": int(time.time()),
                "model": self.model,
                "choices": [choice],
                "usage": self._usage(p, n),
            }
        )

    async def _sse(self, req: SimRequest, p: ParsedRequest, chat: bool) -> AsyncIterator[str]:
        # events are assembled from pre-serialised pieces: no json.dumps per token
        created = int(time.time())
        if chat:
            obj, rid = "chat.completion.chunk", "chatcmpl-" + req.request_id
        else:
            obj, rid = "text_completion", "cmpl-" + req.request_id
        head = (
            f'data: {{"id":"{rid}","object":"{obj}","created":{created},"model":{self._model_json},'
            '"choices":[{"index":0,'
        )
        if chat:
            first, later = head + '"delta":{"role":"assistant","content":', head + '"delta":{"content":'
        else:
            first = later = head + '"text":'
        close = "}" if chat else ""  # the delta object
        mid = close + ',"logprobs":null,"finish_reason":null}]}\n\n'
        last_tail = close + ',"logprobs":null,"finish_reason":"length"}]}\n\n'
        if p.continuous_usage:  # cumulative usage in every event, as vLLM's continuous_usage_stats
            mid, last_tail = (t.replace("}]}\n\n", '}],"usage":{usage}}\n\n') for t in (mid, last_tail))
        last = p.max_tokens - 1
        vocab, nv = _VOCAB_JSON, len(_VOCAB_JSON)
        coalesce = self.config.coalesce_events
        n = 0

        def tail(kind: str, done: int) -> str:
            if not p.continuous_usage:
                return kind
            u = json.dumps(self._usage(p, done), separators=(",", ":"))
            return kind.replace("{usage}", u)

        async with aclosing(self.engine.stream_ranges(req)) as ranges:
            async for start, stop in ranges:
                if coalesce:  # one event carrying every token produced since the last write
                    text = "".join(_VOCAB[i % len(_VOCAB)] for i in range(start, stop))
                    yield (
                        (first if start == 0 else later)
                        + json.dumps(text)
                        + tail(last_tail if stop - 1 == last else mid, stop)
                    )
                else:  # everything already produced goes out as one write (several SSE events)
                    yield "".join(
                        (first if i == 0 else later) + vocab[i % nv] + tail(last_tail if i == last else mid, i + 1)
                        for i in range(start, stop)
                    )
                n = stop
        end = "data: [DONE]\n\n"
        if p.include_usage:
            usage = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": self.model,
                "choices": [],
                "usage": self._usage(p, n),
            }
            end = f"data: {json.dumps(usage, separators=(',', ':'))}\n\n" + end
        yield end


def build_app(args: dict) -> Application:
    """args: {"model": str, "sim": SimEngine dict, "autoscaling": Autoscaling dict, "replica_cpus": float}."""
    args = dict(args or {})
    unknown = sorted(set(args) - ARG_KEYS)
    if unknown:
        raise ValueError(f"unknown build_app arg(s) {unknown}; known: {sorted(ARG_KEYS)}")
    model = args.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("build_app needs `model` (the served model id)")
    sim = SimConfig.from_dict(args.get("sim"))
    autoscaling = autoscaling_config(args.get("autoscaling"))
    replica_cpus = float(args.get("replica_cpus", 0.5))
    from serve_apps.sim.placement import deployment_options

    placement = args.get("placement") or None
    return SimLLM.options(
        autoscaling_config=autoscaling,
        max_ongoing_requests=max_ongoing_requests(sim, autoscaling),
        **deployment_options(placement, replica_cpus),
    ).bind(model, dataclasses.asdict(sim), placement)


app_builder = build_app
