"""Assemble summary.json from the evaluated client stats, server stats and verdicts (pure)."""

from __future__ import annotations

from typing import Any, Literal

from harness.record.schema import (
    ClientStats,
    ModelStats,
    ScopeStats,
    ServerStat,
    SliceStats,
    SLOResult,
    Status,
    Summary,
)
from harness.slo.evaluate import Verdict

# Whole-run request counts: client samples vs server counters after the counters settled. Requests the
# server never saw (connection refused, client timeout before routing) account for a few.
_COUNT_SLACK = 2
_COUNT_REL = 0.01
_TTFT_QS = ("p50", "p90", "p95", "p99")


def reconcile(
    client: dict,
    server: dict,
    locust_requests: int | None,
    sample_rows: int | None,
    histograms: dict[str, dict] | None = None,
    context: dict | None = None,
) -> tuple[dict, list[str]]:
    """Client vs server side by side, with the difference and a warning beyond what bucket resolution explains.

    Counts: all client samples (warmup included) against the server counters' increase from load start
    (`total_run`): the same span, so they should match exactly once the counters settled. The post-warmup
    pair is shown too, but its server side is cut at a scrape boundary (±rate × scrape interval), so it
    is informational. TTFT: the client's percentile against the server histogram's, one-sided, judged
    against the bucket around the server quantile (see `_ttft`). `context`: generator lag, stream batching.
    """
    rec: dict = {}
    warnings: list[str] = []
    if locust_requests is not None and sample_rows is not None:
        rec["samples_vs_locust"] = {
            "samples": sample_rows,
            "locust": locust_requests,
            "diff": sample_rows - locust_requests,
        }
        if sample_rows != locust_requests:
            warnings.append(f"samples ({sample_rows}) differ from Locust's count ({locust_requests})")
    _counts(client, server, rec, warnings)
    _ttft(client, server, (histograms or {}).get("server_ttft"), rec, warnings, context)
    return rec, warnings


def _counts(client: dict, server: dict, rec: dict, warnings: list[str]) -> None:
    n = int(client.get("requests") or 0)
    n_all = n + int(client.get("warmup_requests") or 0) + int(client.get("cooldown_requests") or 0)
    for sig, what in (("serve_requests", "Serve router requests"), ("engine_requests", "engine finished requests")):
        st = server.get(sig) or {}
        if "total_run" in st:
            srv = st["total_run"]
            ok = abs(srv - n_all) <= max(_COUNT_SLACK, _COUNT_REL * n_all)
            rec[f"requests_whole_run_vs_{sig}"] = {
                "client": n_all,
                "server": round(srv, 1),
                "diff": round(srv - n_all, 1),
                "agree": ok,
            }
            if not ok:
                warnings.append(
                    f"client sent {n_all} requests from load start, server {what} counted {srv:.0f} "
                    f"(diff {srv - n_all:+.0f}): lost requests, double counting, or counters that had not settled"
                )
        if "total" in st:  # informational: the server side is cut at a scrape boundary
            rec[f"requests_after_warmup_vs_{sig}"] = {
                "client": n,
                "server": round(st["total"], 1),
                "diff": round(st["total"] - n, 1),
            }


def _ttft(
    client: dict, server: dict, hist: dict | None, rec: dict, warnings: list[str], context: dict | None = None
) -> None:
    """One-sided: the client sees the whole path (generator, proxy, router, ingress, engine), the engine only its
    part, so a client quantile may exceed the server's but never fall below it. The server quantile is only
    known to lie in its bucket: the client value agrees when it lies within one bucket of that bucket, is
    `client_slower` (a real gap, with the likely causes the harness can see) above it, and `client_faster`
    (impossible: wrong series, window or clock) below it."""
    from harness.metrics.mathx import bucket_around, bucket_neighbours

    c_ttft, s_ttft = client.get("ttft_ms"), server.get("server_ttft")
    if not c_ttft or not s_ttft:
        return
    les = [le for le in (hist or {}).get("le", []) if le != float("inf")]
    causes = likely_causes(server, context or {})
    slower, faster = [], []
    for q in _TTFT_QS:
        if q not in s_ttft or q not in c_ttft:
            continue
        c, s = c_ttft[q], s_ttft[q]
        entry: dict = {"client": round(c, 2), "server": round(s, 2), "client_minus_server": round(c - s, 2)}
        if les:
            lo, hi = bucket_around(les, s)
            r_lo, r_hi = bucket_neighbours(les, s)
            entry["bucket_ms"] = [lo, hi]  # the server bucket holding the server quantile
            entry["server_range_ms"] = [r_lo, r_hi]  # ± one bucket: what the server can resolve
            if c < r_lo:
                entry["judgement"], entry["agree"] = "client_faster", False
                faster.append(f"{q} {c:.1f} ms < {r_lo:g} ms (server {s:.1f} ms, bucket {lo:g}-{hi:g} ms)")
            elif c > r_hi:
                entry["judgement"], entry["agree"] = "client_slower", False
                entry["gap_beyond_range_ms"] = round(c - r_hi, 2)
                entry["likely_causes"] = causes
                slower.append(f"{q} {c:.1f} vs {s:.1f} ms (server range {r_lo:g}-{r_hi:g} ms)")
            else:
                entry["judgement"], entry["agree"] = "within_resolution", True
        rec[f"ttft_{q}_ms"] = entry
    if faster:
        warnings.append(
            "client TTFT is below what the server histogram allows (the client sees more of the path than "
            "the engine, never less): " + "; ".join(faster) + ". Check that the server series is this "
            "deployment's and the scrape window matches the load"
        )
    if slower:
        warnings.append(
            "client TTFT exceeds the server's by more than the histogram's resolution: "
            + "; ".join(slower)
            + ". Likely causes: "
            + "; ".join(causes)
        )


def likely_causes(server: dict, context: dict) -> list[str]:
    """What the harness can see of the path between the client's clock and the engine's (most specific first)."""
    out = []
    lag = context.get("generator_lag_p99_ms")
    if lag is not None:
        out.append(f"load generator scheduling lag (p99 {lag:.1f} ms)")
    sb = context.get("stream_batching_interval_ms")
    if sb:
        out.append(f"Ray Serve LLM stream batching ({sb:g} ms interval) delays the first chunk")
    sl, se = (server.get("serve_latency") or {}).get("p50"), (server.get("server_e2e") or {}).get("p50")
    if sl is not None and se is not None:
        out.append(
            f"HTTP proxy, router and ingress hops (Serve HTTP latency p50 {sl:.1f} ms vs engine e2e p50 {se:.1f} ms)"
        )
    else:
        out.append("HTTP proxy, Serve router and ingress deployment hops (not measured separately here)")
    out.append("queueing in Serve before the request reaches the engine (max_ongoing_requests)")
    return out


def build_summary(
    *,
    run_id: str,
    scenario: str,
    status: Status,
    verdicts: list[Verdict],
    client: ClientStats,
    server: dict[str, ServerStat],
    server_series: dict[str, str | None],
    reconciliation: dict[str, dict[str, Any]],
    warnings: list[str],
    measure_only: bool = False,
    server_resolution: dict[str, dict[str, Any]] | None = None,
    autoscaling: dict[str, Any] | None = None,
    scopes: dict[str, ScopeStats] | None = None,
    faults: list[dict[str, Any]] | None = None,
    models: dict[str, ModelStats] | None = None,
    request_kinds: dict[str, SliceStats] | None = None,
    stopped_early: dict[str, Any] | None = None,
    images: dict[str, Any] | None = None,
    modalities: dict[str, SliceStats] | None = None,
) -> Summary:
    from harness.record.health import load_failure

    failure = load_failure({"status": status, "client": client.model_dump(mode="json")})
    verdict: Literal["pass", "fail", "measured"]
    if measure_only:  # nothing to judge but the measurement itself
        verdict = "measured" if failure is None else "fail"
        if failure:
            warnings = [f"measure-only run, but the load failed: {failure}", *warnings]
    else:
        verdict = "pass" if status == "completed" and verdicts and all(v.passed for v in verdicts) else "fail"
        if not verdicts:  # a gate that checks nothing must not pass (the CLI refuses such scenarios up front)
            warnings = ["no SLOs were judged: verdict fail (set measure_only to only measure)", *warnings]
    if stopped_early is not None:  # judged on what it measured; the verdict line says it stopped
        warnings = [
            f"stopped early at {stopped_early['at_s']:.1f} s by load.stop_when.{stopped_early['trigger']}: "
            f"{stopped_early['detail']}; verdict {verdict} on the {stopped_early['at_s']:.1f} s it ran",
            *warnings,
        ]
    return Summary(
        run_id=run_id,
        scenario=scenario,
        status=status,
        verdict=verdict,
        slos=[SLOResult(**v.to_dict()) for v in verdicts],
        client=client,
        server=server,
        server_series=server_series,
        reconciliation=reconciliation,
        warnings=warnings,
        measure_only=measure_only,
        load_failure=failure,
        server_resolution=server_resolution or {},
        autoscaling=autoscaling,
        scopes=scopes,
        faults=faults,
        models=models or {},
        request_kinds=request_kinds or {},
        stopped_early=stopped_early,
        images=images,
        modalities=modalities or {},
    )
