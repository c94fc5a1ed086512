"""Build an annotator (and its chat client) from the config."""

from __future__ import annotations

from concepts.annotation.annotators import AlignmentAnnotator, Annotator, LLMAnnotator
from concepts.annotation.cache import ReplyCache
from concepts.annotation.client import LLMClient
from concepts.annotation.prompts import get_prompt


def make_backend(a):
    if a.backend == "openai":
        from concepts.annotation.openai_backend import OpenAIChat

        return OpenAIChat(a.model, a.base_url, a.api_key_env, a.temperature, a.top_p, a.max_tokens, a.timeout)
    if a.backend == "hf_local":
        from concepts.annotation.hf_backend import HFLocalChat

        return HFLocalChat(a.model, a.max_tokens, a.device)
    raise ValueError(f"no chat backend {a.backend!r}")


def make_client(cfg, cache: ReplyCache | None) -> LLMClient:
    a = cfg.annotator
    return LLMClient(make_backend(a), cache, a.concurrency, a.requests_per_minute, a.tokens_per_minute,
                     a.max_retries, a.backoff_base, a.backoff_max, seed=cfg.annotation.seed,
                     max_connection_failures=a.max_connection_failures)


def make_annotator(cfg, cache: ReplyCache | None = None) -> Annotator:
    a, p = cfg.annotator, cfg.prompt
    if a.backend == "alignment":
        return AlignmentAnnotator(a.tag_sets)
    return LLMAnnotator(make_client(cfg, cache), get_prompt(p.id), p.max_words, p.examples, p.fallback_unique,
                        progress=cfg.extraction.progress, retry_refused=cfg.annotation.retry_refused,
                        max_non_labels=cfg.annotation.max_non_labels, judge_after=cfg.annotation.judge_after)
