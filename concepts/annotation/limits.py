"""Client-side rate limits: requests and tokens per minute, as async token buckets."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """`per_minute` units per minute, bursting up to `burst_seconds` worth; `None` = unlimited."""

    def __init__(self, per_minute: float | None, burst_seconds: float = 1.0):
        self.rate = per_minute
        self.capacity = per_minute * burst_seconds / 60.0 if per_minute else None
        if self.capacity is not None:
            self.capacity = max(self.capacity, 1.0)
        self.level = self.capacity or 0.0
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        if not self.capacity:
            return
        need = min(amount, self.capacity)  # a large request waits for a full bucket, then leaves a debt
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate / 60.0)
                self.stamp = now
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) * 60.0 / self.rate)


class RateLimits:
    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = TokenBucket(requests_per_minute)
        self.tokens = TokenBucket(tokens_per_minute)

    async def acquire(self, tokens: int) -> None:
        await self.requests.take(1)
        await self.tokens.take(tokens)
