"""The chat client every LLM annotator and scorer goes through.

`LLMClient.chat(messages)` answers from the cache when it can; otherwise it waits for a
concurrency slot and the rate limits, calls the backend, retries transient failures (429,
5xx, timeouts, dropped connections, malformed bodies) with exponential backoff and jitter,
honouring `Retry-After`, and stores the reply in the cache the moment it arrives.

A circuit breaker stops the run when the server does not answer at all: after
`max_connection_failures` requests in a row (across requests) that could not connect or timed
out, every request still to come fails at once with a message naming the server. An exhausted
quota (`FatalError`) opens it at the first reply. For JSON prompts, whether the server takes
`response_format` is decided once: while it is unknown one request at a time carries it and
the other JSON requests wait for the verdict.
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
    `connection` marks a failure to reach the server at all (refused, reset, DNS) and `timeout`
    a request the server never answered in time: the client's circuit breaker counts both, in a
    row across requests."""

    def __init__(self, message: str, retry_after: float | None = None, connection: bool = False,
                 timeout: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.connection = connection
        self.timeout = timeout


class PermanentError(Exception):
    """A failure that a retry would not fix (for example HTTP 400): recorded as an error."""


class FatalError(Exception):
    """A failure that ends the run for every request (an exhausted quota): opens the breaker."""


class JsonModeRejected(Exception):
    """The server refused a request for carrying `response_format` (HTTP 400). The backend has
    already recorded the verdict (`json_supported = False`); the client sends the request again
    without it, counting both requests."""


class ChatBackend(Protocol):
    """What the client needs of a backend. Optional attributes, read with getattr: `where` (the
    server named in errors), `base_url` (the server, part of the cache key when set) and
    `json_supported` (None while unknown whether the server takes `response_format`; a backend
    without it is never probed)."""

    name: str  # openai | hf_local
    model: str
    params: dict  # generation parameters (part of the cache key)

    async def complete(self, messages: list[dict], json_mode: bool = False) -> CachedReply:
        """One completion (`json_mode`: ask for a JSON object where the server supports it);
        raises TransientError for failures worth retrying, JsonModeRejected when the server
        refused `response_format`."""
        ...


@dataclass
class ChatResult:
    text: str
    finish_reason: str | None
    cached: bool
    error: str | None = None  # set when every attempt failed; then text is ""


@dataclass
class Usage:
    requests: int = 0  # sent to the backend (retries and requests refused for response_format included)
    answered: int = 0  # requests the backend answered
    cached: int = 0  # answered from the cache (or by an identical request in flight)
    retries: int = 0
    failed: int = 0  # sent, then given up: after the last retry, on a permanent error, or by the breaker
    timeouts: int = 0  # requests the server did not answer in time
    json_mode_rejected: int = 0  # requests refused (HTTP 400) for carrying response_format; sent again without
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
    """Cache, concurrency, rate limits, retries and the circuit breaker around one backend.

    `max_connection_failures`: requests in a row, across requests, that got no answer at all
    (could not connect, or timed out) before the breaker opens and the run stops. Any answer
    from the server (a reply, an HTTP error, a malformed body) resets the count."""

    def __init__(self, backend: ChatBackend, cache: ReplyCache | None = None, concurrency: int = 8,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 max_retries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0, seed: int = 0,
                 max_connection_failures: int = 3):
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
        self._json_probe: asyncio.Lock | None = None  # held by the one request probing response_format
        self._pending: dict[str, asyncio.Future] = {}
        self.max_connection_failures = max_connection_failures
        self._unanswered = 0  # requests in a row (across requests) that could not connect or timed out
        self._unanswered_timeouts = 0  # of those, the timeouts
        self.broken: str | None = None  # set when the breaker opens: why
        self._paid: set[str] = set()  # keys whose cost is counted (answered or reused in this run)

    def start(self) -> None:
        """Fresh concurrency slots, probe lock and rate buckets for a new event loop."""
        self._slots = asyncio.Semaphore(self.concurrency)
        self._json_probe = asyncio.Lock()
        self.limits = RateLimits(*self._rates)
        self._pending = {}

    @property
    def where(self) -> str:
        """The server named in errors (its URL; never the key)."""
        return getattr(self.backend, "where", None) or self.backend.name

    def key(self, messages: list[dict], json_mode: bool = False) -> str:
        """The cache key: backend, model, messages, generation parameters and, when the backend
        talks to a server named by a base URL, that server (so two servers never share replies)."""
        params = {**self.backend.params, "json_mode": True} if json_mode else self.backend.params
        return cache_key(self.backend.name, self.backend.model, messages, params,
                         server=getattr(self.backend, "base_url", None))

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

    def _json_unknown(self) -> bool:
        """Whether it is still unknown if the server takes `response_format`."""
        return getattr(self.backend, "json_supported", True) is None

    async def _call(self, messages: list[dict], json_mode: bool) -> CachedReply:
        """One request to the backend (two when the server refuses `response_format`: the
        same request again without it), each counted in `usage.requests`."""
        self.usage.requests += 1
        if not json_mode:
            return await self.backend.complete(messages)
        try:
            return await self.backend.complete(messages, json_mode=True)
        except JsonModeRejected:
            self.usage.json_mode_rejected += 1
            await self.limits.acquire(estimate_tokens(messages))
            self.usage.requests += 1
            return await self.backend.complete(messages, json_mode=True)  # the backend now leaves it out

    def _unanswered_request(self, e: TransientError) -> None:
        """Count a request the server did not answer; open the breaker at the limit."""
        self._unanswered += 1
        self._unanswered_timeouts += e.timeout
        if self._unanswered < self.max_connection_failures or self.broken:
            return
        n, timeouts = self._unanswered, self._unanswered_timeouts
        if not timeouts:
            self.broken = f"{self.where} could not be reached: {n} connection failures in a row ({e})"
        else:
            what = (f"{n} requests in a row timed out" if timeouts == n
                    else f"{n} requests in a row timed out ({timeouts}) or could not connect ({n - timeouts})")
            self.broken = (f"{self.where} is not answering: {what} (last: {e}); if the server is only slow, "
                           "raise annotator.timeout or lower annotator.concurrency")
        log.debug("%s; stopping", self.broken)  # the caller reports it once

    def _answered(self) -> None:
        """The server answered (a reply or an HTTP error): it is there."""
        self._unanswered = self._unanswered_timeouts = 0

    async def _send(self, key: str, messages: list[dict], json_mode: bool = False) -> ChatResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        if self._json_probe is None:
            self._json_probe = asyncio.Lock()
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            probing = False
            if json_mode and self._json_unknown():  # one request probes; the others wait for the verdict
                await self._json_probe.acquire()
                probing = True
                if not self._json_unknown():  # decided while this request waited
                    self._json_probe.release()
                    probing = False
            try:
                async with self._slots:
                    if self.broken:  # the breaker opened while this request waited
                        self.usage.failed += attempt > 0  # sent before: it failed; never sent: not a request
                        return ChatResult("", None, cached=False, error=self.broken)
                    await self.limits.acquire(estimate_tokens(messages))
                    try:
                        reply = await self._call(messages, json_mode)
                    except TransientError as e:
                        last = str(e)
                        retry_after = e.retry_after
                        self.usage.timeouts += e.timeout
                        if e.connection or e.timeout:
                            self._unanswered_request(e)
                        else:
                            self._answered()
                        if self.broken:
                            self.usage.failed += 1
                            return ChatResult("", None, cached=False, error=self.broken)
                    except FatalError as e:
                        self.usage.failed += 1
                        if not self.broken:
                            self.broken = f"{self.where}: {e}"
                        return ChatResult("", None, cached=False, error=self.broken)
                    except PermanentError as e:
                        self._answered()
                        self.usage.failed += 1
                        log.warning("request failed: %s", e)
                        return ChatResult("", None, cached=False, error=str(e))
                    else:
                        self._answered()
                        self._paid.add(key)
                        self.usage.answered += 1
                        self.usage.prompt_tokens += reply.prompt_tokens
                        self.usage.completion_tokens += reply.completion_tokens
                        if self.cache is not None:
                            self.cache.put(key, self.backend.name, self.backend.model, reply)
                        return ChatResult(reply.text, reply.finish_reason, cached=False)
            finally:
                if probing:  # verdict or not (a transient failure): the next waiter goes on
                    self._json_probe.release()
            if attempt < self.max_retries:
                self.usage.retries += 1
                wait = self.delay(attempt, retry_after)
                log.debug("attempt %d failed (%s); retrying in %.2f s", attempt + 1, last, wait)
                await asyncio.sleep(wait)
        self.usage.failed += 1
        log.warning("gave up after %d attempts: %s", self.max_retries + 1, last)
        return ChatResult("", None, cached=False, error=last)
