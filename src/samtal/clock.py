"""The one place samtal reads the wall clock; everything else is handed `now`."""

from __future__ import annotations

import time


def system_clock() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000
