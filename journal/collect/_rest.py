"""REST requests that respect the venue's rate limits.

Each request spends its documented weight from a bucket that refills at the venue's
budget per minute (kept at 80% of Binance's: a whole connection of streams resyncing
after a reconnect must queue, not collect a 429 and then a ban).

Binance answers too many requests with 429 and, to a client that keeps going, 418 (an
IP ban of minutes to days), both with ``Retry-After`` in seconds. Once either comes,
no request of the venue goes out before that time has passed: one gate per venue,
shared by its streams, so twenty books that need a snapshot after a reconnect do not
each find out on their own. Requests also go out at most ``concurrency`` at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import aiohttp
import orjson

DEFAULT_RETRY_AFTER_S: Final = 60.0
"""The wait after a 429/418 without a (readable) Retry-After."""
MIN_RETRY_AFTER_S: Final = 1.0
"""A Retry-After of 0 (or less than this) still waits this long: retried at once, a
limited request is only limited again."""
BUDGET_SHARE: Final = 0.8
REQUEST_TIMEOUT_S: Final = 10.0


class RateLimitedError(Exception):
    """The venue said 429 or 418: no request before ``retry_after_s`` from now."""

    def __init__(self, url: str, status: int, retry_after_s: float) -> None:
        super().__init__(
            f"GET {url}: HTTP {status} ({'rate limited' if status == 429 else 'IP banned'}), "
            f"Retry-After {retry_after_s:g} s: no request to this venue before then"
        )
        self.status = status
        self.retry_after_s = retry_after_s


class RestError(Exception):
    """A request that failed: the status and the start of the body, or the cause."""


def retry_after(headers: Any) -> float:
    """``Retry-After`` in seconds (Binance sends seconds; an HTTP date is not used by
    the venues here and counts as absent)."""
    value = headers.get("Retry-After")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
    if not seconds >= 0:  # negative or NaN
        return DEFAULT_RETRY_AFTER_S
    return max(seconds, MIN_RETRY_AFTER_S)


class RestGate:
    """A venue's REST: at most ``concurrency`` requests at once, none while a rate
    limit the venue announced is running."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        weight_per_minute: float,
        concurrency: int = 2,
    ) -> None:
        self.session = session
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = weight_per_minute * BUDGET_SHARE
        self._refill_per_s = self._capacity / 60.0
        self._tokens = self._capacity
        self._refilled = time.monotonic()
        self.not_before = 0.0  # time.monotonic() before which nothing is sent
        self.rate_limited = 0  # 429/418 answers seen

    async def _spend(self, weight: float) -> None:
        """Wait until the bucket holds ``weight``, then take it."""
        while True:
            now = time.monotonic()
            self._tokens = min(
                self._capacity, self._tokens + (now - self._refilled) * self._refill_per_s
            )
            self._refilled = now
            if self._tokens >= weight:
                self._tokens -= weight
                return
            await asyncio.sleep((weight - self._tokens) / self._refill_per_s)

    async def get_json(self, url: str, weight: float) -> Any:
        """GET ``url`` (``weight`` of the venue's budget per minute) and decode its JSON
        body; RateLimitedError, RestError otherwise."""
        async with self._slots:
            await self._spend(weight)
            # Again after every sleep: another request's answer may have moved the
            # hold further (a 418 ban arriving while we waited out a 429).
            while (wait := self.not_before - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            try:
                timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
                async with self.session.get(url, timeout=timeout) as response:
                    if response.status in (429, 418):
                        seconds = retry_after(response.headers)
                        self.not_before = max(self.not_before, time.monotonic() + seconds)
                        self.rate_limited += 1
                        raise RateLimitedError(url, response.status, seconds)
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise RestError(f"GET {url}: {type(error).__name__}: {error}") from error
            if response.status != 200:
                text = body[:200].decode("utf-8", "replace")
                raise RestError(f"GET {url}: HTTP {response.status}: {text}")
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as error:
                raise RestError(f"GET {url}: the body is not JSON ({error})") from error
