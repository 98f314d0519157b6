"""The names and bounds of samtal's JetStream stream, stated once for the commands (which must
not need nats-py to show their help) and the workers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from samtal.errors import UsageError
from samtal.settings import MAX_SPAN_SECONDS

#: A stream's or a durable consumer's name (NATS ADR-6): no whitespace, no `.`, `*` or `>` (they
#: would make a subject of the API's its own), no path separator (a folder on the server).
_NAME = re.compile(r"[^\s.*>/\\]{1,255}")
#: A subject to publish to: tokens of the same kind of characters joined by `.`, no wildcard.
_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")


@dataclass(frozen=True)
class StreamNames:
    """Where events are published and consumed, and how a worker takes them."""

    #: The stream, made when missing.
    stream: str = "SAMTAL_EVENTS"
    #: Events go to `<subject>.<org>`.
    subject: str = "samtal.events"
    #: The durable pull consumer every worker shares.
    durable: str = "samtal"
    #: Where a message that can never be stored goes, with its reason (outside the stream).
    dead_letter: str = "samtal.rejected"
    #: How long the stream keeps events, when a command makes it.
    max_age_days: float = 7.0
    #: Seconds a worker may hold a batch before JetStream hands it to another.
    ack_wait: float = 60.0
    #: Events per fetch and transaction.
    batch: int = 5000

    def __post_init__(self) -> None:
        """UsageError, with the option, for what NATS would refuse (or take wrongly) later."""
        for option, name in (("--stream", self.stream), ("--durable", self.durable)):
            if not _NAME.fullmatch(name):
                raise UsageError(
                    f"{option} {name!r} is not a JetStream name: no space, `.`, `*`, `>` or "
                    "`/`, e.g. SAMTAL_EVENTS"
                )
        for option, subject in (("--subject", self.subject), ("--dead-letter", self.dead_letter)):
            if not _SUBJECT.fullmatch(subject):
                raise UsageError(
                    f"{option} {subject!r} is not a NATS subject: words joined by `.`, no "
                    "space and no wildcard (`*`, `>`), e.g. samtal.events"
                )
        for option, value, unit, most in (
            ("--max-age-days", self.max_age_days, "days", MAX_SPAN_SECONDS // 86_400),
            ("--ack-wait", self.ack_wait, "seconds", MAX_SPAN_SECONDS),
        ):
            if not (math.isfinite(value) and 0 <= value <= most):
                raise UsageError(
                    f"{option} must be a number of {unit} up to {most:,} (a hundred years), "
                    f"not {value!r}"
                )
