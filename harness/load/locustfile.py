"""Locust side of the load stage: a streaming OpenAI user and the scenario's stages as a LoadTestShape.

Runs only inside the Locust subprocess started by harness.load.runner (gevent monkey-patches the process).
Config comes from the JSON file named by HARNESS_LOAD_CONFIG; the API key only from HARNESS_LOAD_API_KEY.

Files (all under the run dir, shared by master and local workers):
  samples/samples-<pid>.jsonl  one JSON line per finished request, flushed every 0.5 s and at test stop
  locust/started_at            epoch seconds of shape t=0 (written by the master on its first tick)
  locust/done.cnt              one byte appended per finished request: the master's completion count
  locust/tickets.cnt           one byte appended per started request when max_requests is set (global ticket)
  locust/sent.cnt              one byte appended per request sent (open loop: per arrival, when it is due)
  locust/dropped.cnt           one byte per open-loop arrival never sent (queued at max_concurrency past the end)
  locust/probe-<pid>.json      scheduling-lag percentiles of each Locust process (harness.load.probe)
  locust/pool.json             prepared prompts (datasets, shared prefixes), when the workload has a pool
  locust/images.json           workload.images: one data URL per distinct image (encoded once, before the load)
  locust/trace.json            trace rows to send (workload.trace): send offset, lengths, prefix blocks
  locust/stop                  created by the runner to ask for a graceful stop
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import IO, Any

import gevent
from gevent.lock import BoundedSemaphore
from gevent.pool import Group
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError
from geventhttpclient.url import URL
from locust import LoadTestShape, User, constant, events, task
from locust.runners import WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING

from harness.load.arrivals import arrival_offsets
from harness.load.counter import AppendCounter
from harness.load.images import pick_images, with_images
from harness.load.probe import LagProbe
from harness.load.shape import open_tick, stage_ends, stage_tick
from harness.load.stream import StreamState, build_sample, dropped_sample
from harness.load.trace import TraceReplay
from harness.load.workload import RequestMix, RequestSource, Session, build_body, endpoint_path, user_rng

CFG: dict[str, Any] = json.loads(Path(os.environ["HARNESS_LOAD_CONFIG"]).read_text())
_API_KEY = os.environ.get("HARNESS_LOAD_API_KEY")  # never logged, never written
_LOCUST_DIR = Path(CFG["locust_dir"])
_SAMPLES_DIR = Path(CFG["samples_dir"])
_W = CFG["workload"]
_MAX_REQ: int | None = CFG["max_requests"]
_OPEN: dict[str, Any] | None = CFG.get("open_loop")  # None: closed loop
_POOL = json.loads(Path(CFG["pool_path"]).read_text()) if CFG.get("pool_path") else None
_SOURCE = RequestSource(_W, CFG.get("vocab"), _POOL)
_TRACE = (  # open loop on a trace's send times (harness.load.trace)
    TraceReplay(json.loads(Path(CFG["trace_path"]).read_text()), CFG.get("vocab"), _W, int(CFG["trace_block_tokens"]))
    if CFG.get("trace_path")
    else None
)
_STOP_FILE = _LOCUST_DIR / "stop"
_IMAGES: list[str] | None = json.loads(Path(CFG["images_path"]).read_text()) if CFG.get("images_path") else None
_MIX = RequestMix(CFG["model"], CFG.get("models"), CFG.get("request_kinds"))


def _tokenizer():
    """count_tokens for events whose usage does not say how many tokens they carried (None: no tokenizer)."""
    if not CFG.get("tokenizer_path"):
        return None
    from harness.load.prepare import load_tokenizer

    return load_tokenizer(Path(CFG["tokenizer_path"]))[0]


_COUNT_TOKENS = _tokenizer()
_perf = time.perf_counter
_probe = LagProbe(_LOCUST_DIR)


class _SampleWriter:
    """Per-process JSONL appender. Opened lazily because `--processes` forks after this module is imported."""

    def __init__(self) -> None:
        self._f: IO[str] | None = None
        self._flusher: gevent.Greenlet | None = None

    def write(self, row: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(_SAMPLES_DIR / f"samples-{os.getpid()}.jsonl", "a", buffering=1 << 16)
            self._flusher = gevent.spawn(self._flush_loop)
        self._f.write(json.dumps(row, separators=(",", ":")) + "\n")

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(0.5)
            self.flush()

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()


_writer = _SampleWriter()
_done = AppendCounter(_LOCUST_DIR / "done.cnt")
_tickets = AppendCounter(_LOCUST_DIR / "tickets.cnt")
# offered load, for load.stop_when (harness/load/stop.py); a syscall per request, so only when a detector reads it
_sent = AppendCounter(_LOCUST_DIR / "sent.cnt") if CFG.get("count_sent") else None
_dropped = AppendCounter(_LOCUST_DIR / "dropped.cnt")  # open-loop arrivals still queued at the cap when stages ended
_OPEN_END_S = sum(float(s["duration_s"]) for s in CFG["stages"])
_user_seq = itertools.count()


@events.test_stop.add_listener
def _on_test_stop(**_: Any) -> None:
    _writer.flush()
    _probe.write()


@events.quitting.add_listener
def _on_quitting(**_: Any) -> None:
    _writer.flush()
    _probe.write()


class _LLMBase(User):
    """Shared: connection handling, the request hot path, sample writing. Subclasses decide *when* to send."""

    abstract = True
    wait_time = constant(CFG["think_time_s"])

    def on_start(self) -> None:
        _probe.start()
        runner = self.environment.runner
        self.worker_index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        self.rng = user_rng(int(_W["seed"]), self.worker_index, next(_user_seq))
        assert self.host is not None, "the harness always passes --host"
        url = URL(self.host)
        self.path = endpoint_path(url.path or "/", _W["api"])
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if _API_KEY:
            self.headers["Authorization"] = f"Bearer {_API_KEY}"
        self.url = url
        self._free: list[HTTPClient] = []  # idle keep-alive connections (one per concurrent request)

    def _client(self) -> HTTPClient:
        t = float(_W["request_timeout_s"])
        return HTTPClient.from_url(self.url, concurrency=1, connection_timeout=t, network_timeout=t)

    def on_stop(self) -> None:
        for c in self._free:
            c.close()
        self._free.clear()

    def run_session(
        self, session: Any, rng: Any, sched: tuple[float, float] | None = None, row_model: str | None = None
    ) -> None:
        """Send every turn of a session in order (one turn for single prompts). `sched` (perf, epoch) is when
        the session's first request was due (open loop). One model and request kind for the whole session."""
        pick = _MIX.pick(rng, row_model)
        while True:
            if _STOP_FILE.exists():
                return
            turn = session.next_turn()
            if turn is None:
                return
            messages, max_tokens, prompt_len, idx = turn
            if idx > 0 and CFG["think_time_s"]:
                gevent.sleep(CFG["think_time_s"])  # the user reads the answer before the next turn
            session.reply(self.send(messages, max_tokens, prompt_len, idx, sched if idx == 0 else None, pick))

    def send(
        self,
        messages: list,
        max_tokens: int,
        prompt_len: int,
        turn: int,
        sched: tuple[float, float] | None,
        pick: tuple[str, str, dict[str, Any]],
    ) -> int:
        """One request (`pick`: model, request kind, the kind's body fields); writes its sample; returns the output
        tokens received."""
        stream = bool(_W["stream"])
        if sched is None and _sent is not None:  # an open-loop arrival was counted when it was due
            _sent.bump()
        model, kind, extra = pick
        urls = pick_images(self.rng, _IMAGES, _W["images"]) if _IMAGES else []
        body = build_body(
            api=_W["api"],
            model=model,
            messages=with_images(messages, urls),
            max_tokens=max_tokens,
            stream=stream,
            ignore_eos=bool(_W["ignore_eos"]),
            temperature=float(_W["temperature"]),
            continuous_usage=bool(_W.get("continuous_usage_stats", True)),
            extra=extra,
        )
        http = self._free.pop() if self._free else self._client()
        st = StreamState(keep_payloads=_COUNT_TOKENS is not None)
        status, error, nbytes, usage, source = 0, None, 0, None, "events"
        broken = False  # connection state unknown: drop it rather than reuse it
        t_start = time.time()
        p0 = _perf()
        timeout = gevent.Timeout(float(_W["request_timeout_s"]))
        timeout.start()
        try:
            resp = http.request("POST", self.path, body=body, headers=self.headers)
            status = resp.status_code
            if status != 200:
                nbytes = len(resp.read())
                error = f"http_{status}"
            elif stream:
                readline, feed = resp.readline, st.feed
                while True:
                    line = readline(b"\n")
                    if not line:
                        break
                    feed(line, _perf())  # hot path: a timestamp, a prefix check and one regex per chunk
                    nbytes += len(line)
                    if st.done:
                        break
                error = st.finish_error()
                usage = st.usage
                source = st.count_with(_COUNT_TOKENS)
                if not st.done:
                    broken = True
                else:
                    resp.read()  # consume the chunked terminator so the connection is reusable
            else:
                raw = resp.read()
                nbytes = len(raw)
                p_last = _perf()
                try:
                    obj = json.loads(raw)
                    usage = obj.get("usage")
                    msg = ((obj.get("choices") or [{}])[0] or {}).get("message") or {}
                    st.token_times.append(p_last)  # non-streamed: the whole answer is the "first token"
                    st.event_tokens.append((usage or {}).get("completion_tokens"))
                    st.event_kinds.append("t" if msg.get("tool_calls") and not msg.get("content") else "c")
                    st.first_content = p_last if msg.get("content") or not msg else None  # not msg: completions
                except ValueError:
                    error = "bad_response"
        except gevent.Timeout as t:
            if t is not timeout:
                raise
            error, broken = "timeout", True
        except (HTTPConnectionClosed, OSError):  # refused, reset, closed before/while answering
            error, broken = "connection", True
        except HTTPParseError:  # the server spoke something that isn't HTTP
            error, broken = "bad_stream", True
        finally:
            timeout.close()
        p_end = _perf()
        if broken:
            http.close()
        else:
            self._free.append(http)
        row = build_sample(
            t_start=t_start,
            p_start=p0,
            p_end=p_end,
            token_times=st.token_times,
            usage=usage,
            status=status,
            error=error,
            prompt_words=prompt_len,
            max_tokens=max_tokens,
            worker=os.getpid(),
            sched_s=sched[1] if sched else None,
            lateness_ms=round((p0 - sched[0]) * 1000.0, 4) if sched else None,
            turn=turn,
            event_tokens=st.event_tokens,
            first_content=st.first_content,
            token_count_source=source,
            event_kinds=st.event_kinds,
            model=model,
            kind=kind,
        )
        if _IMAGES is not None:  # per-modality statistics (harness.load.images.image_stats)
            details = (usage or {}).get("prompt_tokens_details") or {}
            row.update(images=len(urls), request_bytes=len(body), image_tokens=details.get("image_tokens"))
        _writer.write(row)
        _done.bump()
        # Exactly one Locust event per sample, so Locust's count reconciles with ours.
        self.environment.events.request.fire(
            request_type="POST",
            name=_W["api"],
            response_time=row["e2e_ms"],
            response_length=nbytes,
            exception=RuntimeError(error) if error else None,
            context={},
            response=None,
            url=self.path,
        )
        return int(row["output_tokens"] or 0)


class LLMUser(_LLMBase):
    """Closed-loop user: one streaming request at a time over its own keep-alive connection; multi-turn
    sessions continue across tasks (think_time_s between turns)."""

    abstract = _OPEN is not None

    def on_start(self) -> None:
        super().on_start()
        self.session: Session | None = None

    @task
    def generate(self) -> None:
        if _MAX_REQ is not None and _tickets.bump() > _MAX_REQ:
            gevent.sleep(1.0)  # budget spent: idle until the shape drains and stops the test
            return
        session = self.session
        turn = session.next_turn() if session is not None else None
        if session is None or turn is None:
            session = self.session = _SOURCE.session(self.rng)
            self.pick = _MIX.pick(self.rng)  # one model and request kind per session
            turn = session.next_turn()
        assert turn is not None, "a new session has at least one turn"
        messages, max_tokens, prompt_len, idx = turn
        session.reply(self.send(messages, max_tokens, prompt_len, idx, None, self.pick))


class ArrivalUser(_LLMBase):
    """Open loop: one per Locust process; sends on the arrival schedule (this process's share of the rate)
    whatever the completions, each arrival on its own greenlet and connection, optionally capped."""

    abstract = _OPEN is None

    def on_start(self) -> None:
        super().on_start()
        self._ran = False

    @task
    def arrive(self) -> None:
        if self._ran:
            gevent.sleep(1.0)  # the schedule ran once: idle until the shape stops the test
            return
        self._ran = True
        open_loop = _OPEN
        assert open_loop is not None, "ArrivalUser is abstract without an open-loop config"
        n_proc = max(1, int(CFG["workers"]))
        idx = self.worker_index % n_proc
        offsets = (
            _TRACE.offsets(idx, n_proc)
            if _TRACE is not None
            else arrival_offsets(
                open_loop["stages"],
                process=open_loop["process"],
                burstiness=float(open_loop["burstiness"]),
                seed=int(_W["seed"]) * 1000 + idx,
                share=1.0 / n_proc,
                phase=idx / n_proc,
            )
        )
        cap = open_loop.get("max_concurrency")
        sem = BoundedSemaphore(max(1, -(-int(cap) // n_proc))) if cap else None
        group = Group()
        # Align with the shape's t=0 when it is known (local processes share the run dir).
        try:
            e0 = float((_LOCUST_DIR / "started_at").read_text())
        except (OSError, ValueError):
            e0 = time.time()
        p0 = _perf() - (time.time() - e0)
        for off in offsets:
            if self._state == LOCUST_STATE_STOPPING or _STOP_FILE.exists():
                break
            if _MAX_REQ is not None and _tickets.bump() > _MAX_REQ:
                break
            delay = p0 + off - _perf()
            if delay > 0:
                gevent.sleep(delay)
            if _sent is not None:
                _sent.bump()
            group.spawn(self._one, (p0 + off, e0 + off), sem, p0 + _OPEN_END_S, getattr(off, "row", None))
        group.join(timeout=float(_W["request_timeout_s"]) + 5.0)

    def _one(
        self, sched: tuple[float, float], sem: BoundedSemaphore | None, end_perf: float, trace_row: int | None = None
    ) -> None:
        rng = random.Random(f"harness-arrival:{_W['seed']}:{os.getpid()}:{sched[1]!r}")
        session = _TRACE.session(trace_row) if _TRACE is not None and trace_row is not None else _SOURCE.session(rng)
        row_model = _TRACE.rows[trace_row].get("model") if _TRACE is not None and trace_row is not None else None
        if sem is None:
            self.run_session(session, rng, sched, row_model)
            return
        with sem:
            if _perf() > end_perf:  # still queued behind the cap when the stages ended: never sent
                _dropped.bump()
                # a failed request at its scheduled time (error_rate, goodput), one Locust event like every sample
                model, kind, _ = _MIX.pick(rng, row_model)
                row = dropped_sample(
                    sched_s=sched[1],
                    waited_ms=(_perf() - sched[0]) * 1000.0,
                    worker=os.getpid(),
                    model=model,
                    kind=kind,
                )
                _writer.write(row)
                _done.bump()
                self.environment.events.request.fire(
                    request_type="POST",
                    name=_W["api"],
                    response_time=row["lateness_ms"],
                    response_length=0,
                    exception=RuntimeError("dropped"),
                    context={},
                    response=None,
                    url=self.path,
                )
                return
            self.run_session(session, rng, sched, row_model)


class StagesShape(LoadTestShape):
    """The scenario's stages, then a drain: users go to 0 (in-flight requests finish, bounded by
    --stop-timeout) and the test ends once Locust's aggregated count has caught up with the completion
    counter, so master stats include the workers' last requests."""

    stages: list[dict[str, Any]] = CFG["stages"]
    ends = stage_ends(stages)

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._drain_since: float | None = None

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if not self._started:
            self._started = True
            # t=0 of the stages in wall-clock time; written atomically for the runner.
            tmp = _LOCUST_DIR / "started_at.tmp"
            tmp.write_text(repr(time.time() - t))
            tmp.replace(_LOCUST_DIR / "started_at")
        if self._drain_since is None:
            _probe.start()  # the master's own scheduling lag
            cur = (
                open_tick(self.ends, t, max(1, int(CFG["workers"]))) if _OPEN else stage_tick(self.stages, t, self.ends)
            )
            stop = (_LOCUST_DIR / "stop").exists() or (_MAX_REQ is not None and _done.value() >= _MAX_REQ)
            if cur is not None and not stop:
                return cur
            self._drain_since = t
        runner = self.runner
        counted = runner.stats.total.num_requests if runner is not None else 0
        users = runner.user_count if runner is not None else 0
        if (users == 0 and counted >= _done.value()) or t - self._drain_since > CFG["drain_timeout_s"]:
            return None
        return 0, 1000.0
