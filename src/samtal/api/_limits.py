"""Rate limits per token (spec/api.md, "Rate limits"), counted by the `limits` library in
memory or, with `SAMTAL_REDIS_URL`, in Redis shared by every process of the installation.

Keys are the installation's id and the token's hash, under a `samtal:` prefix: two
installations sharing one Redis never share a budget, and no key says which row a token is.
When Redis cannot be reached the API keeps answering (fail open), logs it and counts it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from samtal import metrics
from samtal.errors import TooManyRequests

log = logging.getLogger(__name__)
#: Seconds a Redis call may take before the request goes on without it.
REDIS_TIMEOUT = 0.5
#: At most one warning about an unreachable Redis per this many seconds.
WARN_EVERY = 30.0
#: A setting (`60/minute`) as the limiter takes it, parsed once (6.5 us each time, twice a
#: request).
_item = lru_cache(maxsize=16)(parse)


@dataclass(frozen=True)
class Verdict:
    """A request's standing against its limit: the headers to send."""

    headers: dict[str, str]


class Limits:
    """The limiter of one server process."""

    def __init__(self, redis_url: str, installation: str) -> None:
        prefix = f"samtal:{installation}"
        self.shared = bool(redis_url)
        self._storage: Storage
        if redis_url:
            self._storage = RedisStorage(
                "async+" + redis_url if redis_url.startswith("redis") else redis_url,
                key_prefix=prefix,
                connect_timeout=REDIS_TIMEOUT,
                stream_timeout=REDIS_TIMEOUT,
            )
        else:
            self._storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(self._storage)
        self._warned = 0.0
        #: Requests let through because the counter could not be reached.
        self.failures = 0
        #: Requests refused with 429.
        self.rejected = 0

    async def check(self, setting: str, token_hash: str, scope: str = "read") -> Verdict:
        """Count one request of the token against `setting` (`60/minute`, `off`); the headers
        to send, or TooManyRequests (with them) when it is over."""
        if setting == "off":
            return Verdict({})
        item = _item(setting)
        window = item.get_expiry()
        policy = f'"default";q={item.amount};w={window}'
        key = f"{scope}:{token_hash}"
        try:
            allowed = await self._limiter.hit(item, key)
            stats = await self._limiter.get_window_stats(item, key)
        except Exception as exc:
            self._fail(exc)
            return Verdict({"RateLimit-Policy": policy})
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Policy": policy,
            "RateLimit": f'"default";r={stats.remaining};t={reset}',
        }
        if not allowed:
            self.rejected += 1
            metrics.RATE_LIMITED.inc()
            raise TooManyRequests(
                f"this token may make {item.amount} requests per {_unit(item)}: "
                f"try again in {max(1, reset)} s",
                {**headers, "Retry-After": str(max(1, reset))},
            )
        return Verdict(headers)

    async def refuse_failing(
        self, setting: str, address: str, *, unless: Callable[[], Awaitable[bool]]
    ) -> None:
        """TooManyRequests when the client at `address` has failed to authenticate as often
        as `setting` allows (it is refused before its token costs a database lookup), unless
        `unless()` says this request is to go on all the same."""
        if setting == "off":
            return
        item = _item(setting)
        try:
            allowed = await self._limiter.test(item, f"auth-failures:{address}")
        except Exception as exc:
            self._fail(exc)
            return
        if not allowed and not await unless():
            self.rejected += 1
            metrics.RATE_LIMITED.inc()
            wait = max(1, item.get_expiry())
            raise TooManyRequests(
                f"too many failed authentications from your address: try again in {wait} s "
                "with a valid token",
                {"Retry-After": str(wait)},
            )

    async def failed(self, setting: str, address: str) -> None:
        """Count a failed authentication of the client at `address`."""
        if setting == "off":
            return
        try:
            await self._limiter.hit(_item(setting), f"auth-failures:{address}")
        except Exception as exc:
            self._fail(exc)

    async def ready(self) -> bool:
        """Whether the counter can be reached (always, in memory)."""
        if not self.shared:
            return True
        try:
            return bool(await self._storage.check())
        except Exception as exc:
            self._fail(exc)
            return False

    def _fail(self, exc: Exception) -> None:
        self.failures += 1
        metrics.REDIS_FAILURES.inc()
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "cannot reach Redis for the rate limits (%s: %s): letting requests through",
                type(exc).__name__,
                exc,
            )


def _unit(item: RateLimitItem) -> str:
    return {1: "second", 60: "minute", 3600: "hour"}.get(item.get_expiry(), "window")
