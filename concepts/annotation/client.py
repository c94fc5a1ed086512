"""The chat client every LLM annotator and scorer goes through.

`LLMClient.chat(messages)` answers from the cache when it can; otherwise it waits for a
concurrency slot and the rate limits, calls the backend, retries transient failures (429,
5xx, timeouts, dropped connections, malformed bodies) with exponential backoff and jitter,
honouring `Retry-After`, and stores the reply in the cache the moment it arrives.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import asdict, dataclass
from typing import Protocol

from concepts.annotation.cache import CachedReply, ReplyCache, cache_key
from concepts.annotation.limits import RateLimits
from concepts.annotation.prompts import estimate_tokens

log = logging.getLogger(__name__)


class TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's wish in seconds, if it said one;
    `connection` marks a failure to reach the server at all (refused, reset, DNS), which the
    client's circuit breaker counts across requests."""

    def __init__(self, message: str, retry_after: float | None = None, connection: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.connection = connection


class PermanentError(Exception):
    """A failure that a retry would not fix (for example HTTP 400): recorded as an error."""


class FatalError(Exception):
    """A failure that ends the run for every request (an exhausted quota): opens the breaker."""


class ChatBackend(Protocol):
    name: str  # openai | hf_local
    model: str
    params: dict  # generation parameters (part of the cache key)

    async def complete(self, messages: list[dict], json_mode: bool = False) -> CachedReply:
        """One completion (`json_mode`: ask for a JSON object where the server supports it);
        raises TransientError for failures worth retrying."""
        ...


@dataclass
class ChatResult:
    text: str
    finish_reason: str | None
    cached: bool
    error: str | None = None  # set when every attempt failed; then text is ""


@dataclass
class Usage:
    requests: int = 0  # sent to the backend (retries included)
    answered: int = 0  # requests the backend answered
    cached: int = 0  # answered from the cache (or by an identical request in flight)
    retries: int = 0
    failed: int = 0  # gave up after the last retry
    prompt_tokens: int = 0  # of the replies received in this run
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of the cached replies this run reused (paid for by an earlier run)
    cached_completion_tokens: int = 0

    def cost(self, price_input_per_1m: float, price_output_per_1m: float) -> float:
        """USD of this run's requests."""
        return (self.prompt_tokens * price_input_per_1m + self.completion_tokens * price_output_per_1m) / 1e6

    def cached_cost(self, price_input_per_1m: float, price_output_per_1m: float) -> float:
        """USD the reused cached replies cost when they were first asked."""
        return (self.cached_prompt_tokens * price_input_per_1m
                + self.cached_completion_tokens * price_output_per_1m) / 1e6

    def to_dict(self) -> dict:
        return asdict(self)


def parse_retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class LLMClient:
    def __init__(self, backend: ChatBackend, cache: ReplyCache | None = None, concurrency: int = 8,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 max_retries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0, seed: int = 0,
                 max_connection_failures: int = 5):
        self.backend = backend
        self.cache = cache
        self.concurrency = concurrency
        self._rates = (requests_per_minute, tokens_per_minute)
        self.limits = RateLimits(*self._rates)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.usage = Usage()
        self._rng = random.Random(seed)
        self._slots: asyncio.Semaphore | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self.max_connection_failures = max_connection_failures
        self._connection_failures = 0  # in a row, across requests
        self.broken: str | None = None  # set when the breaker opens: why
        self._paid: set[str] = set()  # keys whose cost is counted (answered or reused in this run)

    def start(self) -> None:
        """Fresh concurrency slots and rate buckets for a new event loop."""
        self._slots = asyncio.Semaphore(self.concurrency)
        self.limits = RateLimits(*self._rates)
        self._pending = {}

    def key(self, messages: list[dict], json_mode: bool = False) -> str:
        params = {**self.backend.params, "json_mode": True} if json_mode else self.backend.params
        return cache_key(self.backend.name, self.backend.model, messages, params)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; never shorter than the server's Retry-After."""
        backoff = min(self.backoff_max, self.backoff_base * 2 ** attempt) * (0.5 + 0.5 * self._rng.random())
        return max(backoff, retry_after) if retry_after is not None else backoff

    async def chat(self, messages: list[dict], refresh: bool = False, json_mode: bool = False) -> ChatResult:
        """The reply to `messages`: from the cache (unless `refresh`), from an identical request
        already in flight, or from the backend (`json_mode`: structured output where supported)."""
        key = self.key(messages, json_mode)
        if self.cache is not None and not refresh:
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.cached += 1
                if key not in self._paid:  # each distinct reply's cost counted once
                    self._paid.add(key)
                    self.usage.cached_prompt_tokens += hit.prompt_tokens or 0
                    self.usage.cached_completion_tokens += hit.completion_tokens or 0
                return ChatResult(hit.text, hit.finish_reason, cached=True)
        if self.broken:
            return ChatResult("", None, cached=False, error=self.broken)
        pending = self._pending.get(key)
        if pending is not None:  # the same request is in flight: share its reply
            shared = await asyncio.shield(pending)
            if shared.error is None:
                self.usage.cached += 1
            return shared
        task = asyncio.ensure_future(self._send(key, messages, json_mode))
        self._pending[key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._pending.pop(key, None)

    async def _send(self, key: str, messages: list[dict], json_mode: bool = False) -> ChatResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        last = ""
        for attempt in range(self.max_retries + 1):
            async with self._slots:
                if self.broken:  # the breaker opened while this request waited
                    return ChatResult("", None, cached=False, error=self.broken)
                await self.limits.acquire(estimate_tokens(messages))
                self.usage.requests += 1
                try:
                    reply = await (self.backend.complete(messages, json_mode=True) if json_mode
                                   else self.backend.complete(messages))
                except TransientError as e:
                    last = str(e)
                    retry_after = e.retry_after
                    if e.connection:
                        self._connection_failures += 1
                        if self._connection_failures >= self.max_connection_failures and not self.broken:
                            where = getattr(self.backend, "where", None) or self.backend.name
                            self.broken = (f"{where} could not be reached: {self._connection_failures} connection "
                                           f"failures in a row ({last})")
                            log.debug("%s; stopping", self.broken)  # the caller reports it once
                        if self.broken:
                            self.usage.failed += 1
                            return ChatResult("", None, cached=False, error=self.broken)
                except FatalError as e:
                    self.usage.failed += 1
                    if not self.broken:
                        where = getattr(self.backend, "where", None) or self.backend.name
                        self.broken = f"{where}: {e}"
                    return ChatResult("", None, cached=False, error=self.broken)
                except PermanentError as e:
                    self.usage.failed += 1
                    log.warning("request failed: %s", e)
                    return ChatResult("", None, cached=False, error=str(e))
                else:
                    self._connection_failures = 0
                    self._paid.add(key)
                    self.usage.answered += 1
                    self.usage.prompt_tokens += reply.prompt_tokens
                    self.usage.completion_tokens += reply.completion_tokens
                    if self.cache is not None:
                        self.cache.put(key, self.backend.name, self.backend.model, reply)
                    return ChatResult(reply.text, reply.finish_reason, cached=False)
            if attempt < self.max_retries:
                self.usage.retries += 1
                wait = self.delay(attempt, retry_after)
                log.debug("attempt %d failed (%s); retrying in %.2f s", attempt + 1, last, wait)
                await asyncio.sleep(wait)
        self.usage.failed += 1
        log.warning("gave up after %d attempts: %s", self.max_retries + 1, last)
        return ChatResult("", None, cached=False, error=last)
