"""What samtal counts for its operators, in the Prometheus text format (prometheus-client).

With several server processes (`samtal serve --workers N`), `PROMETHEUS_MULTIPROC_DIR` is set
before any of them starts, and each writes its figures there; `render()` then reports them as
one. Every metric is defined here, once; the layers that see an event count it.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "samtal_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "samtal_http_request_duration_seconds",
    "Time to answer an HTTP request, to its last byte.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EVENTS = Counter(
    "samtal_events_total",
    "Events received, by ingest path (http, nats, import) and outcome.",
    ["path", "outcome"],
)
EVENTS_AFTER_SETTLING = Counter(
    "samtal_events_after_settling_total",
    "Events of calls that had settled (query.md): corrections behind the completeness watermark.",
)
RECORD_CHANGES = Counter(
    "samtal_record_changes_total",
    "Record versions made visible: new records, changed ones, deleted ones (tombstones).",
    ["kind"],
)
VISIBLE_LAG = Histogram(
    "samtal_record_visible_lag_seconds",
    "From a call's stop to the version of its record that it made visible.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)
BATCHES_PER_COMMIT = Histogram(
    "samtal_ingest_batches_per_commit",
    "For each batch stored, the batches committed with it in one transaction (itself too): "
    "on SQLite, the batches that waited for its one writer are stored together.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
DUTY_RUNS = Counter("samtal_duty_runs_total", "Rounds of the background duties.")
DUTY_FAILURES = Counter("samtal_duty_failures_total", "Parts of duty rounds that failed.")
WEBHOOK_DELIVERIES = Counter(
    "samtal_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, failed, gone).",
    ["outcome"],
)
WEBHOOK_BACKLOG = Gauge(
    "samtal_webhook_backlog",
    "Webhook messages not yet delivered, over every subscription.",
    multiprocess_mode="livemax",
)
RATE_LIMITED = Counter("samtal_rate_limited_total", "Requests refused with 429.")
REDIS_FAILURES = Counter(
    "samtal_redis_failures_total", "Requests let through because Redis could not be reached."
)
JETSTREAM_PENDING = Gauge(
    "samtal_jetstream_pending",
    "Messages in the stream not yet delivered to the consumer (its lag, in messages).",
    multiprocess_mode="livemax",
)
JETSTREAM_ACK_PENDING = Gauge(
    "samtal_jetstream_ack_pending",
    "Messages delivered to the consumer and not yet acknowledged.",
    multiprocess_mode="livemax",
)

#: The media type of `render()`.
CONTENT_TYPE = CONTENT_TYPE_LATEST


def registry() -> CollectorRegistry:
    """Every process's figures where there are several, else this process's."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return REGISTRY


def render() -> bytes:
    """The metrics in the Prometheus text format."""
    return generate_latest(registry())
