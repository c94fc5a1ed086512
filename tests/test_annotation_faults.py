"""Faults of real servers, driven through the official `openai` client against the local test
server on 127.0.0.1: an HTML page sent with HTTP 200, a server that never answers, quota
exhaustion said in any field, two servers sharing one reply cache, and JSON mode decided once
under concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time

import pytest
from llm_server import Html, LLMServer, Reply, Silent, Status, user_text
from omegaconf import OmegaConf

from concepts.annotation.annotators import LLMAnnotator
from concepts.annotation.cache import ReplyCache
from concepts.annotation.client import ChatResult, LLMClient
from concepts.annotation.config import AnnotatorConfig
from concepts.annotation.openai_backend import OpenAIChat
from concepts.annotation.prompts import get_prompt
from concepts.core.cli import CONF_DIR
from concepts.discovery.records import Concept, Member

BACKOFF_MAX = 0.05  # seconds: every test backs off at most this long between attempts
SECRET = "sk-test-FAULTS-DO-NOT-LEAK-7331"


def _client(base_url: str, concurrency: int = 1, timeout: float = 5.0, cache: ReplyCache | None = None,
            **kw) -> LLMClient:
    backend = OpenAIChat("test-model", base_url, timeout=timeout)
    return LLMClient(backend, cache, concurrency=concurrency, backoff_base=0.01, backoff_max=BACKOFF_MAX, **kw)


def _messages(prompt: str) -> list[dict]:
    return [{"role": "system", "content": "Name the concept."}, {"role": "user", "content": prompt}]


def _ask(client: LLMClient, prompts: list[str], json_mode: bool = False) -> list[ChatResult]:
    """Every prompt at once, as the annotator sends them (bounded by the client's concurrency)."""
    async def go():
        client.start()
        return await asyncio.gather(*(client.chat(_messages(p), json_mode=json_mode) for p in prompts))

    return asyncio.run(go())


def _max_backoffs(n: int) -> float:
    """The longest the client can sleep between n attempts in these tests."""
    return max(0, n - 1) * BACKOFF_MAX


# ---------------------------------------------------------------- HTTP 200 that is not a completion

def test_an_html_page_with_http_200_is_retried_then_a_clean_error(caplog):
    caplog.set_level(logging.WARNING, logger="concepts.annotation.client")
    with LLMServer(lambda r, n: Html()) as server:
        client = _client(server.base_url, max_retries=2)
        [res] = _ask(client, ["dog, cat"])  # the openai client hands back a str here: no traceback
        assert len(server.requests) == 3
    assert res.text == "" and not res.cached
    assert "malformed reply" in res.error and "not a chat completion" in res.error and "<html>" in res.error
    assert client.usage.failed == 1 and client.usage.retries == 2 and client.usage.requests == 3
    assert client.usage.answered == 0 and client.broken is None  # the server answers: no breaker
    assert any("gave up after 3 attempts" in r.getMessage() for r in caplog.records)


def test_an_html_page_once_then_a_reply_is_answered_and_the_annotator_records_errors_cleanly():
    with LLMServer(lambda r, n: Html() if n == 0 else Reply("Animals")) as server:
        [res] = _ask(_client(server.base_url), ["dog, cat"])
        assert res.error is None and res.text == "Animals" and len(server.requests) == 2
    concept = Concept.build("m", 1, 2, 0, [Member("dog", 0, 0), Member("cat", 1, 0)])
    with LLMServer(lambda r, n: Html()) as server:
        client = _client(server.base_url, max_retries=1)
        ann = LLMAnnotator(client, get_prompt("default"), progress=False).annotate([concept], [])[0]
    assert ann.status == "error" and ann.label is None and "not a chat completion" in ann.description
    assert client.usage.failed == 1


# ---------------------------------------------------------------- a server that never answers

@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_server_that_never_answers_trips_the_breaker_naming_the_url(concurrency):
    timeout, limit, prompts = 0.3, 3, [f"w{i}" for i in range(10)]
    with LLMServer(lambda r, n: Silent()) as server:
        client = _client(server.base_url, concurrency=concurrency, timeout=timeout, max_retries=6,
                         max_connection_failures=limit)
        t0 = time.monotonic()
        results = _ask(client, prompts)
        elapsed = time.monotonic() - t0
        seen = len(server.requests)
    assert client.broken and server.base_url in client.broken and "timed out" in client.broken
    assert f"{limit} requests in a row timed out" in client.broken and "annotator.timeout" in client.broken
    assert all(r.error == client.broken and r.text == "" for r in results)
    assert client.usage.answered == 0 and 1 <= client.usage.failed <= client.usage.requests
    assert client.usage.timeouts == client.usage.requests  # every request sent timed out
    if concurrency == 1:  # one request after another: the breaker opens at the limit-th timeout
        assert seen == client.usage.requests == limit
        # the prompts sent failed; the others were turned away unsent
        assert client.usage.failed == len({user_text(r) for r in server.requests})
        bound = limit * timeout + _max_backoffs(limit)
    else:  # all in flight at once: the first to time out are retried until the limit-th timeout,
        # then the requests still in flight fail as they time out; nothing more is sent
        assert seen <= client.usage.requests <= concurrency + limit - 1
        bound = 2 * timeout + _max_backoffs(2)
    # without the breaker this would be len(prompts) x 7 attempts x timeout (21 s)
    assert elapsed < bound + 3.0


def test_timeouts_between_answers_do_not_trip_the_breaker():
    # every request times out once, then is answered: never two unanswered in a row
    with LLMServer(lambda r, n: Silent() if n % 2 == 0 else Reply(f"label {n}")) as server:
        client = _client(server.base_url, timeout=0.3, max_connection_failures=2)
        results = _ask(client, ["a", "b", "c"])
        assert len(server.requests) == 6
    assert client.broken is None and all(r.error is None for r in results)
    assert client.usage.timeouts == 3 and client.usage.answered == 3 and client.usage.retries == 3


def test_the_default_settings_give_up_on_a_silent_server_within_about_two_minutes():
    a = AnnotatorConfig()
    yaml = OmegaConf.load(f"{CONF_DIR}/annotator/openai.yaml")
    assert (yaml.timeout, yaml.max_connection_failures) == (a.timeout, a.max_connection_failures)
    assert a.timeout >= 30  # a local 70B model takes 20-30 s a reply
    # concurrency 1, the worst case: the limit-th timeout in a row, with the longest backoffs between
    n = a.max_connection_failures
    worst = n * a.timeout + sum(min(a.backoff_max, a.backoff_base * 2 ** i) for i in range(n - 1))
    assert worst <= 130, worst
    # and the client's own default agrees with the config's
    assert LLMClient.__init__.__defaults__[-1] == a.max_connection_failures


# ---------------------------------------------------------------- quota exhaustion in any field

QUOTA_BODIES = {
    "type only": {"error": {"message": "no more", "type": "insufficient_quota", "code": None}},
    "message only": {"error": {"message": "You exceeded your current quota, please check your plan and billing "
                                          "details.", "type": None, "code": None}},
    "code only": {"error": {"message": "no more", "type": "requests", "code": "insufficient_quota"}},
}


@pytest.mark.parametrize("which", sorted(QUOTA_BODIES))
def test_an_exhausted_quota_said_in_any_field_stops_after_one_request(which):
    body = json.dumps(QUOTA_BODIES[which])
    with LLMServer(lambda r, n: Status(429, body=body)) as server:
        client = _client(server.base_url, max_retries=6)
        results = _ask(client, [f"w{i}" for i in range(5)])
        assert len(server.requests) == 1
    assert client.broken and server.base_url in client.broken and "insufficient_quota" in client.broken
    assert all(r.error == client.broken for r in results) and client.usage.retries == 0


def test_a_plain_rate_limit_is_not_mistaken_for_an_exhausted_quota():
    body = json.dumps({"error": {"message": "Rate limit reached for requests", "type": "requests",
                                 "code": "rate_limit_exceeded"}})
    with LLMServer(lambda r, n: Status(429, body=body) if n < 2 else Reply("Animals")) as server:
        client = _client(server.base_url)
        [res] = _ask(client, ["dog"])
        assert len(server.requests) == 3
    assert res.text == "Animals" and client.broken is None and client.usage.retries == 2


# ---------------------------------------------------------------- the cache and the server

def test_two_servers_with_the_same_model_name_never_share_cached_replies(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    prompts = ["dog, cat", "run, ran", "red, blue"]
    cache = ReplyCache(tmp_path / "c.sqlite")
    with LLMServer(lambda r, n: Reply(f"A: {user_text(r)}")) as a, \
            LLMServer(lambda r, n: Reply(f"B: {user_text(r)}")) as b:
        first = _ask(_client(a.base_url, cache=cache), prompts)
        other = _ask(_client(b.base_url, cache=cache), prompts)
        assert len(a.requests) == 3 and len(b.requests) == 3  # the second server was asked
        assert [r.text for r in first] == [f"A: {p}" for p in prompts] and not any(r.cached for r in first)
        assert [r.text for r in other] == [f"B: {p}" for p in prompts] and not any(r.cached for r in other)
        # the same server again, written with a trailing '/': every reply from the cache, its own
        again = _ask(_client(a.base_url + "/", cache=cache), prompts)
        assert len(a.requests) == 3 and [r.text for r in again] == [r.text for r in first]
        assert all(r.cached for r in again)
    assert len(cache) == 6
    cache.close()
    assert SECRET.encode() not in (tmp_path / "c.sqlite").read_bytes()


def test_keys_for_the_official_api_are_unchanged_and_never_hold_the_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    messages = _messages("dog, cat")

    def old_formula(params: dict) -> str:  # the key before the server joined it, written out by hand
        blob = json.dumps({"backend": "openai", "model": "gpt-4o-mini", "messages": messages, "params": params},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    params = {"temperature": 0.0, "top_p": 0.95, "max_tokens": 64}
    keys = []
    for api_key in (SECRET, "sk-test-another-one"):
        monkeypatch.setenv("OPENAI_API_KEY", api_key)
        client = LLMClient(OpenAIChat("gpt-4o-mini"))
        assert client.key(messages) == old_formula(params)
        assert client.key(messages, json_mode=True) == old_formula({**params, "json_mode": True})
        keys.append(client.key(messages))
    assert keys[0] == keys[1]  # the API key never enters the key
    local = LLMClient(OpenAIChat("gpt-4o-mini", "http://127.0.0.1:9/v1"))
    assert local.key(messages) != keys[0]


# ---------------------------------------------------------------- JSON mode decided once

def _json_server(accepts: bool, first_fails: bool = False):
    """A responder that answers JSON, refuses response_format unless `accepts` (optionally
    failing the very first request with a 500), and records how many requests carrying
    response_format were in flight at once."""
    state = {"carrying": 0, "max_carrying": 0}
    lock = threading.Lock()

    def responder(request, n):
        carries = "response_format" in request
        with lock:
            state["carrying"] += carries
            state["max_carrying"] = max(state["max_carrying"], state["carrying"])
        try:
            time.sleep(0.05)  # long enough for every concurrent request to be waiting
            if first_fails and n == 0:
                return Status(500)
            if carries and not accepts:
                return Status(400, body='{"error": {"message": "response_format is not supported", '
                                        '"type": "invalid_request_error"}}')
            return Reply(json.dumps({"label": user_text(request), "type": "lexical"}))
        finally:
            with lock:
                state["carrying"] -= carries

    return responder, state


def test_json_mode_is_probed_once_under_concurrency_and_every_request_is_counted(caplog):
    caplog.set_level(logging.INFO, logger="concepts.annotation.openai_backend")
    prompts = [f"w{i}" for i in range(16)]
    responder, state = _json_server(accepts=False)
    with LLMServer(responder) as server:
        client = _client(server.base_url, concurrency=8)
        results = _ask(client, prompts, json_mode=True)
        carried = sum("response_format" in r for r in server.requests)
        seen = len(server.requests)
    assert carried == 1 and seen == len(prompts) + 1  # the refused probe, then every prompt without it
    assert client.usage.requests == seen and client.usage.json_mode_rejected == 1
    assert client.usage.answered == len(prompts) and client.usage.failed == 0 and client.usage.retries == 0
    assert [json.loads(r.text)["label"] for r in results] == prompts
    lines = [r for r in caplog.records if "does not take response_format" in r.getMessage()]
    assert len(lines) == 1 and server.base_url in lines[0].getMessage()
    assert client.backend.json_supported is False


def test_json_mode_taken_is_decided_by_one_request_then_runs_concurrently():
    responder, state = _json_server(accepts=True)
    with LLMServer(responder) as server:
        client = _client(server.base_url, concurrency=8)
        results = _ask(client, [f"w{i}" for i in range(16)], json_mode=True)
        assert all(r["response_format"] == {"type": "json_object"} for r in server.requests)
        assert len(server.requests) == 16 and server.max_in_flight > 1
    assert all(r.error is None for r in results) and client.backend.json_supported is True


def test_a_probe_that_fails_transiently_hands_the_probe_to_one_other_request():
    responder, state = _json_server(accepts=False, first_fails=True)
    with LLMServer(responder) as server:
        client = _client(server.base_url, concurrency=8)
        results = _ask(client, [f"w{i}" for i in range(8)], json_mode=True)
        carried = sum("response_format" in r for r in server.requests)
        seen = len(server.requests)
    assert carried == 2 and state["max_carrying"] == 1  # the 500, then the refusal: never two at once
    assert all(r.error is None for r in results) and client.usage.requests == seen == 8 + 2
    assert client.usage.json_mode_rejected == 1 and client.usage.retries == 1
