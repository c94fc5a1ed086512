"""The `openai` backend: the official client (async) against OpenAI or any compatible server.

The API key is read from the environment variable the config names and is kept only inside
the client object: it is never logged, cached or written to a config or an output.

Failures map to the client's errors: HTTP 429, 5xx, 408 and 409 and malformed bodies (an HTML
page sent with HTTP 200 included) are transient; timeouts and connection failures are transient
too and counted by the circuit breaker; an exhausted quota is fatal; other 4xx are permanent.
"""

from __future__ import annotations

import logging
import os

from concepts.annotation.cache import CachedReply
from concepts.annotation.client import (
    FatalError,
    JsonModeRejected,
    PermanentError,
    TransientError,
    parse_retry_after,
)
from concepts.core.errors import UserError
from concepts.core.secrets import KEY_ENV_MESSAGE, looks_like_key

log = logging.getLogger(__name__)
QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached"}


class OpenAIChat:
    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 0.0, top_p: float = 0.95, max_tokens: int = 64, timeout: float = 40.0):
        from openai import AsyncOpenAI

        for name in ("httpx", "httpx2", "openai"):  # one INFO line per request is noise at this scale
            logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
        key = os.environ.get(api_key_env)
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if not key:
            if not base_url:
                raise UserError(
                    f"annotator=openai needs an API key: export {api_key_env}=... (or point annotator.base_url "
                    "at a local OpenAI-compatible server, or use annotator=alignment offline)"
                    if not looks_like_key(api_key_env) else KEY_ENV_MESSAGE)
            key = "not-needed"  # local servers usually accept any key
        self.model = model
        self.base_url = base_url
        self.where = base_url or "https://api.openai.com/v1"  # named in errors (never the key)
        self.json_supported: bool | None = None  # takes response_format? None: not known yet (the client probes)
        self.timeout = timeout
        self.params = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self._client = AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChat(model={self.model!r}, base_url={self.base_url!r})"

    async def complete(self, messages: list[dict], json_mode: bool = False) -> CachedReply:
        """One completion; with `json_mode`, `response_format={"type": "json_object"}` unless the
        server has refused it (HTTP 400): then `json_supported` turns False, one info line says
        so and JsonModeRejected tells the client to send the request again (it goes without)."""
        import openai

        extra = {"response_format": {"type": "json_object"}} if json_mode and self.json_supported is not False else {}
        try:
            resp = await self._client.chat.completions.create(model=self.model, messages=messages, **self.params, **extra)
        except openai.BadRequestError:
            if not extra:
                raise PermanentError("HTTP 400") from None
            if self.json_supported is not False:
                self.json_supported = False
                log.info("%s does not take response_format; asking for JSON in the prompt only", self.where)
            raise JsonModeRejected("HTTP 400 for response_format") from None
        except (openai.RateLimitError, openai.InternalServerError) as e:
            if quota_exhausted(e):
                raise FatalError("HTTP 429 insufficient_quota: the account has no quota left (check billing)") from None
            raise TransientError(f"HTTP {e.status_code}", parse_retry_after(e.response.headers)) from None
        except openai.APITimeoutError:
            raise TransientError(f"no answer within {self.timeout:g} s (annotator.timeout)", timeout=True) from None
        except openai.APIConnectionError as e:
            raise TransientError(f"connection failed: {type(e).__name__}", connection=True) from None
        except (openai.APIResponseValidationError, ValueError) as e:  # ValueError: a body that is not JSON
            raise TransientError(f"malformed reply: {type(e).__name__}") from None
        except openai.AuthenticationError:
            raise UserError("the server refused the API key (HTTP 401); check the environment variable "
                            "named by annotator.api_key_env") from None
        except openai.NotFoundError:
            raise UserError(f"the server does not know model {self.model!r} or the path (HTTP 404); "
                            "check annotator.model and annotator.base_url") from None
        except openai.APIStatusError as e:
            if e.status_code in (408, 409) or e.status_code >= 500:
                raise TransientError(f"HTTP {e.status_code}", parse_retry_after(e.response.headers)) from None
            raise PermanentError(f"HTTP {e.status_code}") from None
        if extra and self.json_supported is None:
            self.json_supported = True
        return reply_of(resp)


def quota_exhausted(e) -> bool:
    """Whether an HTTP error says the account has no quota left: by the error's `code` or `type`
    (`insufficient_quota`, `billing_hard_limit_reached`) or by its message ("You exceeded your
    current quota"), since servers fill in different fields."""
    if {getattr(e, "code", None), getattr(e, "type", None)} & QUOTA_CODES:
        return True
    body = getattr(e, "body", None)
    message = body.get("message") if isinstance(body, dict) else body
    text = f"{message or ''} {getattr(e, 'message', '') or ''}".lower()
    return "exceeded your current quota" in text or any(code in text for code in QUOTA_CODES)


def reply_of(resp) -> CachedReply:
    """The reply in a chat completion; TransientError for anything else a server sent with
    HTTP 200 (an HTML page from a proxy comes back from the client as a str, a JSON body of
    another shape as an object without choices)."""
    if isinstance(resp, (str, bytes)):
        head = " ".join(str(resp)[:60].split())
        raise TransientError(f"malformed reply: HTTP 200 with a body that is not a chat completion ({head!r})")
    try:
        choice = resp.choices[0]
        msg = choice.message
        text = msg.content or ""
        finish = choice.finish_reason
        refusal = getattr(msg, "refusal", None)
        usage = getattr(resp, "usage", None)
        prompt_tokens = (usage.prompt_tokens or 0) if usage else 0
        completion_tokens = (usage.completion_tokens or 0) if usage else 0
    except (AttributeError, IndexError, KeyError, TypeError):
        raise TransientError("malformed reply: HTTP 200 without a usable choice") from None
    if not isinstance(text, str):
        raise TransientError("malformed reply: HTTP 200 whose message content is not text")
    if refusal:
        text, finish = str(refusal), "refusal"
    return CachedReply(text, finish, int(prompt_tokens), int(completion_tokens))
