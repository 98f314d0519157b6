"""Typed settings, read from the environment (prefix `SAMTAL_`), each with its help text."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from samtal.errors import UsageError

DEFAULT_DATABASE_URL = "sqlite:///samtal.db"
_LIMIT = re.compile(r"off|[1-9][0-9]{0,8}/(second|minute|hour)")
_REDIS = re.compile(r"(redis|rediss|redis\+unix)://.*")
#: The longest an installation or an organisation may keep calls: a hundred years. Further
#: back than the calendar's start (year 1, about 739,000 days) no date can be had, and every
#: read failed (a 500) with such a setting.
MAX_RETENTION_DAYS = 36_525
#: The longest any other span of the settings (and of the stream's options, `streams.py`) may
#: be, in seconds (a hundred years): more overflowed the 64-bit microseconds the stores keep
#: instants in, and NATS's 64-bit nanoseconds.
MAX_SPAN_SECONDS = MAX_RETENTION_DAYS * 86_400


def _setting(default: Any, help: str, *, positive: bool = False, most: float = math.inf) -> Any:
    """A setting of `default`'s type; a number is finite, 0 or more (more than 0 when
    `positive`) and at most `most`."""
    return field(default=default, metadata={"help": help, "positive": positive, "most": most})


@dataclass(frozen=True)
class Settings:
    """Everything a samtal server or command can be told; see `describe()` for the help."""

    database_url: str = _setting(
        DEFAULT_DATABASE_URL,
        "Where the data lives: sqlite:///relative/path.db, sqlite:////absolute/path.db or "
        "postgresql://user@host:port/database.",
    )
    retention_days: int = _setting(
        92,
        "Days of call history kept (and queryable) back from today; 0 keeps everything.",
        most=MAX_RETENTION_DAYS,
    )
    max_future_seconds: int = _setting(
        86400,
        "An event whose `at` lies more than this after the server's clock is rejected (a "
        "switch with a broken clock); so is one before the retention window.",
        most=MAX_SPAN_SECONDS,
    )
    settle_seconds: int = _setting(
        600,
        "A call with a record and an `ended` settles when no event of it came for this long: "
        "what the completeness watermark (Samtal-Complete-Through) waits for.",
        most=MAX_SPAN_SECONDS,
    )
    idle_close_hours: float = _setting(
        12.0,
        "A call with no stop that has received no event for this long is closed.",
        positive=True,  # 0 would close every call in progress
        most=MAX_SPAN_SECONDS / 3600,
    )
    max_body_bytes: int = _setting(
        16 * 1024 * 1024, "Largest POST /events body accepted; larger ones get 413.", positive=True
    )
    max_inflight_bytes: int = _setting(
        64 * 1024 * 1024,
        "Most bytes of POST /events bodies held at once, across clients; a body that would "
        "go over it gets 503 with Retry-After (one body alone is always taken).",
    )
    nats_url: str = _setting(
        "nats://127.0.0.1:4222",
        "NATS server of `samtal publish` and `samtal consume` (JetStream ingest).",
    )
    duty_interval_seconds: float = _setting(
        60.0,
        "How often the server closes idle calls and purges expired ones.",
        positive=True,  # 0 kept a core busy
        most=86_400,
    )
    webhook_retry_seconds: str = _setting(
        "5,300,1800,7200,18000,36000,36000",
        "Seconds before each retry of a failed webhook delivery (with 10% jitter); after the "
        "last, the message is given up.",
    )

    rate_limit: str = _setting(
        "60/minute",
        "Requests each read token may make to the read endpoints together (/cdr/historik, "
        "/cdr/changes, /cdr/calls, /cdr/stats, /cdr/erasures): N/second, N/minute, N/hour, "
        "or off.",
    )
    ingest_rate_limit: str = _setting(
        "off", "Requests each ingest token may make to POST /events (same forms)."
    )
    auth_failure_limit: str = _setting(
        "30/minute",
        "Failed authentications each client address may make (same forms); past it, its "
        "requests get 429 before their token costs a database lookup.",
    )
    redis_url: str = _setting(
        "",
        "Redis that every server process shares the rate limits through "
        "(redis://host:6379/0); empty: each process counts in memory.",
    )
    log_format: str = _setting("text", "Server log lines as `text` or `json` (one object a line).")

    def __post_init__(self) -> None:
        for spec in fields(self):
            _check_range(spec.name, getattr(self, spec.name), spec.metadata)
        self.webhook_retry_delays  # noqa: B018 (checked when made, not when first used)
        for name in ("rate_limit", "ingest_rate_limit", "auth_failure_limit"):
            text = getattr(self, name)
            if not _LIMIT.fullmatch(text):
                raise UsageError(
                    f"SAMTAL_{name.upper()}={text!r}: use N/second, N/minute, N/hour or off"
                )
        if self.log_format not in ("text", "json"):
            raise UsageError(f"SAMTAL_LOG_FORMAT={self.log_format!r}: use text or json")
        if self.redis_url and not _REDIS.fullmatch(self.redis_url):
            raise UsageError(
                f"SAMTAL_REDIS_URL={self.redis_url!r}: use redis://host:6379/0 (or rediss://, "
                "redis+unix://), or nothing to count in each process"
            )

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """`webhook_retry_seconds` as numbers; UsageError when malformed."""
        text = self.webhook_retry_seconds
        try:
            delays = tuple(float(part) for part in text.split(","))
        except ValueError:
            delays = ()
        if not delays or not all(0 <= delay <= MAX_SPAN_SECONDS for delay in delays):
            raise UsageError(
                f"SAMTAL_WEBHOOK_RETRY_SECONDS={text!r}: give seconds (0 to {MAX_SPAN_SECONDS:,} "
                "each) separated by commas, e.g. 5,300,1800"
            )
        return delays

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `SAMTAL_<NAME>` variables, then `overrides` (ignored when None)."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = env.get(f"SAMTAL_{spec.name.upper()}")
            if raw is not None:
                values[spec.name] = _convert(spec.name, raw, type(spec.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, help) for every setting."""
        return [
            (f"SAMTAL_{f.name.upper()}", _shown(f.default), f.metadata["help"]) for f in fields(cls)
        ]


def _shown(default: object) -> str:
    """A default as people write it: 12, not 12.0."""
    return format(default, "g") if isinstance(default, float) else str(default)


def _convert(name: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError as exc:
        raise UsageError(f"SAMTAL_{name.upper()}={raw!r} is not a valid {kind.__name__}") from exc


def _check_range(name: str, value: object, limits: Mapping[str, Any]) -> None:
    if not isinstance(value, int | float):
        return
    least = "more than 0" if limits["positive"] else "0 or more"
    if limits["most"] < math.inf:
        least += f" and at most {_shown(limits['most'])}"
    if (
        not math.isfinite(value)
        or value < 0
        or (limits["positive"] and value == 0)
        or value > limits["most"]
    ):
        raise UsageError(f"SAMTAL_{name.upper()} must be {least}, not {_shown(value)}")
