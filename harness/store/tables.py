"""The store's tables (SQLAlchemy Core; the same DDL on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

runs = Table(
    "harness_runs",
    metadata,
    Column("run_id", String(200), primary_key=True, comment="Run folder name (unique per run)."),
    Column("scenario", String(200), nullable=False, index=True),
    Column("status", String(20), comment="completed | interrupted | failed"),
    Column("verdict", String(10), comment="pass | fail | null (no summary)"),
    Column("created_at", Float, index=True, comment="Epoch seconds: the run folder was created."),
    Column("finished_at", Float, comment="Epoch seconds: the record was finalised."),
    Column("host", String(255), comment="Machine that wrote the run folder."),
    Column("path", Text, comment="Absolute path of the run folder on that host."),
    Column("artifacts", Text, comment="Where CI keeps the folder's artifacts (e.g. the GitHub Actions run URL)."),
    Column("harness_version", String(50)),
    Column("git_commit", String(80)),
    Column("ray_version", String(50)),
    Column("vllm_version", String(50)),
    Column("python_version", String(20)),
    Column("labels", JSON, comment="User labels plus branch/commit/runner."),
    Column("stats", JSON, comment="Key statistics, canonical units in the names (ttft_p95_ms, error_rate, ...)."),
    Column("slos", JSON, comment="[{slo, passed, observed}]"),
    Column("run_doc", JSON, comment="run.json (secret-looking values removed)."),
    Column("summary_doc", JSON, comment="summary.json."),
    Column("indexed_at", Float, comment="Epoch seconds: written to the store."),
    Column("schema_version", Integer),
)

labels = Table(
    "harness_run_labels",
    metadata,
    Column("run_id", String(200), ForeignKey("harness_runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(100), primary_key=True),
    Column("value", String(500), nullable=False),
    Index("ix_harness_run_labels_kv", "key", "value"),
)
