"""The names and bounds of samtal's JetStream stream, stated once for the commands (which must
not need nats-py to show their help) and the workers."""

from __future__ import annotations

from dataclasses import dataclass


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
