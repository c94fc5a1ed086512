"""Annotators: one interface, `annotate(concepts, sentences) -> [Annotation]`, per backend.

- `AlignmentAnnotator`: offline and deterministic; labels a concept by its aligned
  human-defined tags (for example "XPOS=NNS (97%)"), or marks it unaligned. It is the
  human-concept baseline the paper compares LLM labels against.
- `LLMAnnotator`: asks a chat backend (`openai` or `hf_local`) through `LLMClient` with one of
  the prompts; a refused, filtered or unparseable reply to the token list is asked again with
  the unique types (the paper's fallback), and never becomes a label. A cached refusal is
  asked again only with `retry_refused`. Each annotation carries its generation settings.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import Counter

from tqdm.auto import tqdm

from concepts.annotation.client import LLMClient
from concepts.annotation.prompts import Prompt, cap_words
from concepts.core.errors import UserError
from concepts.discovery.records import Annotation, Concept

log = logging.getLogger(__name__)

TAG_SET_TYPES = {"upos": "syntactic", "xpos": "syntactic", "deprel": "syntactic", "feats": "morphological",
                 "wordnet": "semantic", "suffix": "lexical", "casing": "lexical", "is_number": "lexical",
                 "first_word": "syntactic"}


# statuses that say the reply held no label (an abstention counts unless the prompt offers NA as an answer)
NON_LABELS = ("refused", "filtered", "truncated", "unparseable", "none")


class NonLabelStorm(UserError):
    """Too many replies were not labels: the run stops before any record changes."""


def storm_message(counts: Counter, replies: int, limit: float, examples: list[str]) -> str:
    bad = sum(counts.values())
    kinds = ", ".join(f"{k} {n}" for k, n in counts.most_common())
    shown = "; ".join(repr(e[:60] + ("..." if len(e) > 60 else "")) for e in examples[:3])
    return (f"stopped: {bad} of the {replies} replies so far are not labels ({kinds}), more than "
            f"annotation.max_non_labels={limit:g}. That points to a broken prompt, model or server, not to the data; "
            f"no record was changed and nothing was exported (replies are cached). "
            + (f"First ones: {shown}. " if shown else "")
            + "Fix the cause, or raise annotation.max_non_labels (1 = never stop)")


class Annotator(ABC):
    name: str  # the backend, stored in each Annotation
    model: str
    prompt_id: str

    @abstractmethod
    def annotate(self, concepts: list[Concept], sentences: list[list[str]]) -> list[Annotation]:
        """One annotation per concept, in order. `sentences` are the store's sentences (words)."""

    def key(self) -> tuple[str, str, str]:
        return (self.name, self.model, self.prompt_id)


class AlignmentAnnotator(Annotator):
    name = "alignment"
    prompt_id = "alignment"

    def __init__(self, tag_sets: list[str], max_tags: int = 2):
        self.tag_sets = list(tag_sets)
        self.max_tags = max_tags
        self.model = "+".join(self.tag_sets)

    def annotate_one(self, c: Concept) -> Annotation:
        parts, ctype = [], None
        for name in self.tag_sets:
            a = c.alignment.get(name) or {}
            if a.get("aligned"):
                share = next((s for t, s in a.get("best", []) if t == a["aligned"]), None)
                parts.append(f"{name.upper()}={a['aligned']}" + (f" ({share:.0%})" if share is not None else ""))
                ctype = ctype or TAG_SET_TYPES.get(name)
            if len(parts) >= self.max_tags:
                break
        best = [f"{name.upper()}={a['best'][0][0]} {a['best'][0][1]:.0%}" for name in self.tag_sets
                if (a := c.alignment.get(name)) and a.get("best")]
        desc = "best tags: " + ", ".join(best) if best else None
        if not parts:
            return Annotation(self.name, self.model, self.prompt_id, None, "unaligned", desc, "uninterpretable")
        return Annotation(self.name, self.model, self.prompt_id, "; ".join(parts), "ok", desc, ctype)

    def annotate(self, concepts, sentences):
        return [self.annotate_one(c) for c in concepts]


class LLMAnnotator(Annotator):
    def __init__(self, client: LLMClient, prompt: Prompt, max_words: int = 100, examples: int = 3,
                 fallback_unique: bool = True, progress: bool = True, retry_refused: bool = False,
                 max_non_labels: float = 1.0, judge_after: int = 30):
        self.client = client
        self.prompt = prompt
        self.name = client.backend.name
        self.model = client.backend.model
        self.prompt_id = prompt.id
        self.max_words = max_words
        self.examples = examples
        self.fallback_unique = fallback_unique
        self.progress = progress
        self.retry_refused = retry_refused
        self.max_non_labels = max_non_labels
        self.judge_after = judge_after
        params = getattr(client.backend, "params", {}) or {}
        self.settings = ",".join([f"{k}={params[k]}" for k in sorted(params)] + [f"max_words={max_words}"]
                                 + ([f"examples={examples}"] if prompt.context else []))

    def messages(self, c: Concept, sentences: list[list[str]], repeats: bool = True) -> list[dict]:
        words = cap_words(c.type_counts, self.max_words, repeats)
        ex = None
        if self.prompt.context:
            ex = [(sentences[m.sentence], m.position) for m in c.members[: self.examples] if m.sentence < len(sentences)]
        return self.prompt.messages(words, ex)

    async def annotate_one(self, c: Concept, sentences: list[list[str]]) -> Annotation:
        first = self.messages(c, sentences)
        attempts = [first]
        if self.fallback_unique:
            unique = self.messages(c, sentences, repeats=False)
            if unique != first:
                attempts.append(unique)
        ann = None
        for msgs in attempts:
            r = await self.client.chat(msgs, json_mode=self.prompt.json_mode)
            if r.error:
                return Annotation(self.name, self.model, self.prompt_id, None, "error", r.error, settings=self.settings)
            p = self.prompt.parse(r.text, r.finish_reason)
            if r.cached and self.retry_refused and p.status in ("refused", "filtered"):  # ask again, not the cache
                r = await self.client.chat(msgs, refresh=True, json_mode=self.prompt.json_mode)
                if r.error:
                    return Annotation(self.name, self.model, self.prompt_id, None, "error", r.error,
                                      settings=self.settings)
                p = self.prompt.parse(r.text, r.finish_reason)
            ann = Annotation(self.name, self.model, self.prompt_id, p.label, p.status, p.description,
                             p.concept_type, r.text, settings=self.settings)
            if p.usable:
                break
        return ann

    async def _run(self, concepts, sentences) -> list[Annotation]:
        self.client.start()
        bar = tqdm(total=len(concepts), desc=f"annotate ({self.prompt_id})", unit="concept", disable=not self.progress)

        counted = NON_LABELS if not self.prompt.offers_na else tuple(s for s in NON_LABELS if s != "none")
        seen: Counter = Counter()
        examples: list[str] = []

        async def one(c):
            a = await self.annotate_one(c, sentences)
            bar.update()
            if a.status != "error":
                seen["replies"] += 1
                if a.status in counted:
                    seen[a.status] += 1
                    if a.raw:
                        examples.append(a.raw.strip())
                self._judge(seen, examples)
            return a

        try:
            return await asyncio.gather(*(one(c) for c in concepts))
        finally:
            bar.close()

    def _judge(self, seen: Counter, examples: list[str]) -> None:
        """Stop the run (NonLabelStorm) when too many of the replies so far are not labels."""
        replies = seen["replies"]
        bad = Counter({k: v for k, v in seen.items() if k != "replies"})
        if self.max_non_labels < 1 and replies >= self.judge_after and sum(bad.values()) > self.max_non_labels * replies:
            raise NonLabelStorm(storm_message(bad, replies, self.max_non_labels, examples))

    def annotate(self, concepts, sentences):
        return asyncio.run(self._run(concepts, sentences))
