"""The domain's exceptions: one tree, each class knowing the HTTP status it maps to."""

from __future__ import annotations


class SamtalError(Exception):
    """Base of every error samtal raises on purpose; its message is for the user."""

    status: int = 500
    title: str = "Internal error"


class UsageError(SamtalError):
    """The caller asked for something that cannot be done as asked."""

    status = 400
    title = "Bad request"


class UnknownZone(UsageError):
    """A time zone name that the IANA database does not know."""
