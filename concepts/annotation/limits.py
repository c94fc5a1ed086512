"""Client-side rate limits: requests and tokens per minute, as async token buckets."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """`rate` units per minute, bursting up to one minute's worth; `None` = unlimited."""

    def __init__(self, per_minute: float | None):
        self.capacity = per_minute
        self.level = per_minute or 0.0
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        if not self.capacity:
            return
        amount = min(amount, self.capacity)
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.capacity / 60.0)
                self.stamp = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) * 60.0 / self.capacity)


class RateLimits:
    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = TokenBucket(requests_per_minute)
        self.tokens = TokenBucket(tokens_per_minute)

    async def acquire(self, tokens: int) -> None:
        await self.requests.take(1)
        await self.tokens.take(tokens)
