"""The server's background duties: closing idle calls (cdr.md) and purging expired ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from samtal.period import earliest_instant
from samtal.settings import Settings
from samtal.store import Store
from samtal.times import US_PER_SECOND, zone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DutyReport:
    """What one round of duties did."""

    closed: int
    purged: int


def run_duties(store: Store, settings: Settings, *, now: int) -> DutyReport:
    """Close calls idle for `idle_close_hours` and purge calls older than the retention window."""
    idle = int(settings.idle_close_hours * 3600 * US_PER_SECOND)
    closed = store.close_idle_calls(now=now, idle=idle)
    purged = 0
    if settings.retention_days:
        for org in store.orgs():
            before = earliest_instant(
                zone=zone(org.tz), now=now, retention_days=settings.retention_days
            )
            purged += store.purge(org=org.name, before=before)
    if closed or purged:
        log.info("duties: closed %d idle call(s), purged %d expired call(s)", closed, purged)
    return DutyReport(closed, purged)
