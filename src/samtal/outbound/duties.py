"""The server's background duties: closing idle calls (cdr.md) and purging expired ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from samtal.period import earliest_instant
from samtal.settings import Settings
from samtal.store import Store
from samtal.times import US_PER_SECOND, local_day, zone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DutyReport:
    """What one round of duties did, and how many of its parts failed (each is logged)."""

    closed: int
    purged: int
    failed: int = 0


def _nothing() -> None:
    pass


def run_duties(
    store: Store, settings: Settings, *, now: int, between: Callable[[], None] = _nothing
) -> DutyReport:
    """Close calls idle for `idle_close_hours`, note the calls that settled (query.md), and
    purge calls older than the retention window.

    Each part fails alone: a failure is logged and the other parts still run; the next round
    tries again. `between` is called between the round's transactions: on the one writer of
    SQLite, the server stores there the batches that came meanwhile, which would otherwise
    wait for the whole round (3.8 s, once 100,000 calls went idle at once).
    """
    idle = int(settings.idle_close_hours * 3600 * US_PER_SECOND)
    closed = purged = failed = 0
    try:
        closed = store.close_idle_calls(now=now, idle=idle, between=between)
    except Exception:
        failed += 1
        log.exception("closing idle calls failed; trying again next round")
    between()
    try:
        store.settle(now=now, settle=settings.settle_seconds * US_PER_SECOND)
    except Exception:
        failed += 1
        log.exception("noting settled calls failed; trying again next round")
    between()
    try:
        store.tune()
    except Exception:
        failed += 1
        log.exception("refreshing the planner's statistics failed; trying again next round")
    try:
        orgs = store.orgs()
    except Exception:
        failed += 1
        log.exception("purging failed: cannot list the organisations")
        orgs = []
    # Each organisation's own retention (privacy.md), or the installation's; 0 keeps all.
    kept = {org.name: org.retention(settings.retention_days) for org in orgs}
    zones = {org.name: zone(org.tz) for org in orgs}
    cutoffs = {
        name: earliest_instant(zone=zones[name], now=now, retention_days=days)
        for name, days in kept.items()
        if days
    }
    if cutoffs and len(cutoffs) == len(orgs):
        # First the whole days every organisation is past: an engine with partitions drops
        # them whole. Then, row by row, what is left before each one's own cutoff (an
        # organisation that keeps less costs deletes of its own rows only).
        first_kept = min(local_day(cutoffs[name], zones[name]) for name in cutoffs)
        between()
        try:
            store.drop_days(first_kept)
        except Exception:
            failed += 1
            log.exception("dropping the days before %d failed; trying again next round", first_kept)
    try:
        # Only those with something to remove get a transaction: one each for 10,000
        # organisations took 7-15 s a round on PostgreSQL with nothing expired.
        expired = store.expired(cutoffs) if cutoffs else []
    except Exception:
        failed += 1
        log.exception("purging failed: cannot find the expired calls")
        expired = []
    for name in expired:
        between()
        try:
            purged += store.purge(org=name, before=cutoffs[name], between=between)
        except Exception:
            failed += 1
            log.exception("purging %r failed; trying again next round", name)
    if closed or purged:
        log.info("duties: closed %d idle call(s), purged %d expired call(s)", closed, purged)
    return DutyReport(closed, purged, failed)
