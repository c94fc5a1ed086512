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

from tqdm.auto import tqdm

from concepts.annotation.client import LLMClient
from concepts.annotation.prompts import Prompt, cap_words
from concepts.records import Annotation, Concept

log = logging.getLogger(__name__)

TAG_SET_TYPES = {"upos": "syntactic", "xpos": "syntactic", "deprel": "syntactic", "feats": "morphological",
                 "wordnet": "semantic", "suffix": "lexical", "casing": "lexical", "is_number": "lexical",
                 "first_word": "syntactic"}


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
                 fallback_unique: bool = True, progress: bool = True, retry_refused: bool = False):
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

        async def one(c):
            a = await self.annotate_one(c, sentences)
            bar.update()
            return a

        try:
            return await asyncio.gather(*(one(c) for c in concepts))
        finally:
            bar.close()

    def annotate(self, concepts, sentences):
        return asyncio.run(self._run(concepts, sentences))
