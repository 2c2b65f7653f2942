"""Locust side of the load stage: a streaming OpenAI user and the scenario's stages as a LoadTestShape.

Runs only inside the Locust subprocess started by harness.load.runner (gevent monkey-patches the process).
Config comes from the JSON file named by HARNESS_LOAD_CONFIG; the API key only from HARNESS_LOAD_API_KEY.

Files (all under the run dir, shared by master and local workers):
  samples/samples-<pid>.jsonl  one JSON line per finished request, flushed every 0.5 s and at test stop
  locust/started_at            epoch seconds of shape t=0 (written by the master on its first tick)
  locust/done.cnt              one byte appended per finished request: the master's completion count
  locust/tickets.cnt           one byte appended per started request when max_requests is set (global ticket)
  locust/stop                  created by the runner to ask for a graceful stop
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError
from geventhttpclient.url import URL
from locust import LoadTestShape, User, constant, events, task
from locust.runners import WorkerRunner

from harness.load.counter import AppendCounter
from harness.load.shape import stage_ends, stage_tick
from harness.load.stream import StreamState, build_sample
from harness.load.workload import build_body, endpoint_path, make_prompt, sample_length, user_rng

CFG: dict[str, Any] = json.loads(Path(os.environ["HARNESS_LOAD_CONFIG"]).read_text())
_API_KEY = os.environ.get("HARNESS_LOAD_API_KEY")  # never logged, never written
_LOCUST_DIR = Path(CFG["locust_dir"])
_SAMPLES_DIR = Path(CFG["samples_dir"])
_W = CFG["workload"]
_MAX_REQ: int | None = CFG["max_requests"]
_perf = time.perf_counter


class _SampleWriter:
    """Per-process JSONL appender. Opened lazily because `--processes` forks after this module is imported."""

    def __init__(self) -> None:
        self._f = None
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
_user_seq = itertools.count()


@events.test_stop.add_listener
def _on_test_stop(**_: Any) -> None:
    _writer.flush()


@events.quitting.add_listener
def _on_quitting(**_: Any) -> None:
    _writer.flush()


class LLMUser(User):
    """Closed-loop user: one streaming request at a time over its own keep-alive connection."""

    wait_time = constant(CFG["think_time_s"])

    def on_start(self) -> None:
        runner = self.environment.runner
        self.worker_index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        self.rng = user_rng(int(_W["seed"]), self.worker_index, next(_user_seq))
        url = URL(self.host)
        self.path = endpoint_path(url.path or "/", _W["api"])
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if _API_KEY:
            self.headers["Authorization"] = f"Bearer {_API_KEY}"
        self.url = url
        self.http = self._client()

    def _client(self) -> HTTPClient:
        t = float(_W["request_timeout_s"])
        return HTTPClient.from_url(self.url, concurrency=1, connection_timeout=t, network_timeout=t)

    def on_stop(self) -> None:
        self.http.close()

    @task
    def generate(self) -> None:
        if _MAX_REQ is not None and _tickets.bump() > _MAX_REQ:
            gevent.sleep(1.0)  # budget spent: idle until the shape drains and stops the test
            return
        rng = self.rng
        n_prompt = sample_length(rng, _W["prompt_tokens"])
        max_tokens = sample_length(rng, _W["output_tokens"])
        stream = bool(_W["stream"])
        body = build_body(
            api=_W["api"], model=CFG["model"], prompt=make_prompt(rng, n_prompt), max_tokens=max_tokens,
            stream=stream, ignore_eos=bool(_W["ignore_eos"]), temperature=float(_W["temperature"]),
        )
        st = StreamState()
        status, error, nbytes, usage = 0, None, 0, None
        broken = False  # connection state unknown: drop it rather than reuse it
        t_start = time.time()
        p0 = _perf()
        timeout = gevent.Timeout(float(_W["request_timeout_s"]))
        timeout.start()
        try:
            resp = self.http.request("POST", self.path, body=body, headers=self.headers)
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
                    st.token_times.append(p_last)  # non-streamed: the whole answer is the "first token"
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
            self.http.close()
            self.http = self._client()
        row = build_sample(
            t_start=t_start, p_start=p0, p_end=p_end, token_times=st.token_times, usage=usage, status=status,
            error=error, prompt_words=n_prompt, max_tokens=max_tokens, worker=os.getpid(),
        )
        _writer.write(row)
        _done.bump()
        # Exactly one Locust event per sample, so Locust's count reconciles with ours.
        self.environment.events.request.fire(
            request_type="POST", name=_W["api"], response_time=row["e2e_ms"], response_length=nbytes,
            exception=RuntimeError(error) if error else None, context={}, response=None, url=self.path,
        )


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
            cur = stage_tick(self.stages, t, self.ends)
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
