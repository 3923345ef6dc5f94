"""How many URL fetches one client address may start per minute (``--fetch-per-minute``).

URL images are on by default, so anyone who can reach the server can make it fetch: the fetcher
refuses private addresses on every hop, and this bounds how often one client can make it do so
(a clear 429 with ``Retry-After``). One instance per service; a sliding window per address.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from sdrest.errors import RetryLaterError

WINDOW_SECONDS = 60.0
_MAX_CLIENTS = 10_000
"""Addresses remembered at most: the oldest are forgotten first (a bound on memory)."""


class UrlFetchRateLimitedError(RetryLaterError):
    """A client started more URL fetches than ``--fetch-per-minute`` allows (429)."""

    status = 429
    code = "rate_limited"


class FetchRateLimiter:
    """A sliding one-minute window of fetch start times per client address."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._starts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str, count: int = 1) -> None:
        """Count ``count`` fetches for ``client``, or raise :class:`UrlFetchRateLimitedError`
        (counting nothing) when they would pass the limit. ``per_minute`` 0 = no limit."""
        if self.per_minute <= 0 or count <= 0:
            return
        now = self._clock()
        with self._lock:
            starts = self._starts.pop(client, None) or deque()
            while starts and starts[0] <= now - WINDOW_SECONDS:
                starts.popleft()
            self._starts[client] = starts  # re-inserted: the dict stays in last-used order
            if len(self._starts) > _MAX_CLIENTS:
                del self._starts[next(iter(self._starts))]
            if len(starts) + count > self.per_minute:
                wait = starts[0] + WINDOW_SECONDS - now if starts else WINDOW_SECONDS
                raise UrlFetchRateLimitedError(
                    f"too many URL images from this address: at most {self.per_minute} a"
                    " minute (--fetch-per-minute)",
                    retry_after=math.ceil(wait),
                )
            starts.extend([now] * count)
