"""Assemble summary.json from the evaluated client stats, server stats and verdicts (pure)."""

from __future__ import annotations

from harness.record.schema import SLOResult, Summary
from harness.slo.evaluate import Verdict

# Server histograms have coarse buckets; within this relative gap, client and server agree.
_TTFT_TOLERANCE = 0.5


def reconcile(client: dict, server: dict, locust_requests: int | None, sample_rows: int | None) -> tuple[dict, list[str]]:
    rec: dict = {}
    warnings: list[str] = []
    if locust_requests is not None and sample_rows is not None:
        rec["samples_vs_locust"] = {"samples": sample_rows, "locust": locust_requests, "diff": sample_rows - locust_requests}
        if sample_rows != locust_requests:
            warnings.append(f"samples ({sample_rows}) differ from Locust's count ({locust_requests})")
    n = client.get("requests") or 0
    for sig in ("serve_requests", "engine_requests"):
        if sig in server and "total" in server[sig]:
            srv = server[sig]["total"]
            rec[f"client_requests_vs_{sig}"] = {"client": n, "server": round(srv, 1), "diff": round(srv - n, 1)}
            # in-flight requests at the window edges account for a few; more means lost or double counting
            if n and abs(srv - n) > max(5, 0.05 * n):
                warnings.append(f"client counted {n} requests after warmup, server {sig} {srv:.0f}")
    c_ttft, s_ttft = client.get("ttft_ms"), server.get("server_ttft")
    if c_ttft and s_ttft:
        for q in ("p50", "p95"):
            if q in s_ttft and q in c_ttft:
                d = c_ttft[q] - s_ttft[q]
                rec[f"ttft_{q}_ms"] = {"client": round(c_ttft[q], 2), "server": round(s_ttft[q], 2), "client_minus_server": round(d, 2)}
                if s_ttft[q] > 0 and abs(d) / s_ttft[q] > _TTFT_TOLERANCE and abs(d) > 20:
                    warnings.append(f"client TTFT {q} {c_ttft[q]:.1f} ms vs server {s_ttft[q]:.1f} ms: beyond bucket resolution")
    return rec, warnings


def build_summary(
    *, run_id: str, scenario: str, status: str, verdicts: list[Verdict], client: dict, server: dict,
    server_series: dict, reconciliation: dict, warnings: list[str],
) -> Summary:
    ok = status == "completed" and all(v.passed for v in verdicts)
    return Summary(
        run_id=run_id, scenario=scenario, status=status, verdict="pass" if ok else "fail",
        slos=[SLOResult(**v.to_dict()) for v in verdicts], client=client, server=server,
        server_series=server_series, reconciliation=reconciliation, warnings=warnings,
    )
