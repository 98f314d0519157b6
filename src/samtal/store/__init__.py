"""Storage: one narrow interface (`Store`), several engines, chosen by URL."""

from samtal.errors import StoreError
from samtal.store._base import IDLE_CLOSE_ID, Change, IngestSummary, Org, Store, Token
from samtal.store.sqlite import SqliteStore


def open_store(url: str) -> Store:
    """The store at `url`; today `sqlite:///relative.db` or `sqlite:////absolute.db`."""
    if url.startswith("sqlite:"):
        return SqliteStore(url)
    raise StoreError(f"unsupported database URL {url!r}: samtal knows sqlite:/// URLs")


__all__ = [
    "IDLE_CLOSE_ID",
    "Change",
    "IngestSummary",
    "Org",
    "SqliteStore",
    "Store",
    "Token",
    "open_store",
]
