"""Prompts for concept annotation.

Every prompt turns a concept into chat messages, and a reply into a `Parsed` result through
its parser in `concepts.annotation.replies` (a label only when the reply holds one: refusals,
abstentions, filtered and malformed replies get that status and no label).

Word-list cap (`max_words`): a concept whose tokens (with repeats) fit is shown whole, most
frequent type first. A larger one shows every type at least once and each type
`max(1, floor(count * max_words / total))` times, most frequent first, until `max_words`
words are listed; so a concept with more than `max_words` types shows its `max_words` most
frequent types once each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from concepts.annotation.replies import (
    CONCEPT_TYPES,
    PENN_TAGS,
    Parsed,
    parse_detection,
    parse_label,
    parse_na,
    parse_structured,
    penn_tag,
    strip_reasoning,
)
from concepts.core.errors import UserError

__all__ = ["CONCEPT_TYPES", "PENN_TAGS", "PROMPTS", "Parsed", "Prompt", "cap_words", "detection_messages",
           "estimate_tokens", "get_prompt", "parse_detection", "penn_tag", "strip_reasoning"]


def cap_words(type_counts: dict[str, int], max_words: int, repeats: bool = True) -> list[str]:
    """The words shown for a concept (see the module docstring for the rule).

    Args:
        type_counts: word type -> occurrences in the concept.
    """
    ordered = sorted(type_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if not repeats:
        return [w for w, _ in ordered][:max_words]
    total = sum(c for _, c in ordered)
    words: list[str] = []
    for w, c in ordered:
        n = c if total <= max_words else max(1, c * max_words // total)
        words += [w] * min(n, max_words - len(words))
        if len(words) >= max_words:
            break
    return words


def _word_list(words: list[str]) -> str:
    return "[" + ", ".join(words) + "]"


_SYSTEM = "You are a linguist who names the concept that a group of words from a language model shares."


@dataclass(frozen=True)
class Prompt:
    id: str
    instruction: str  # {words} is replaced by the word list
    parse: Callable[[str, str | None], Parsed]
    context: bool = False  # add example sentences with the word marked
    json_mode: bool = False  # ask the server for a JSON object (response_format) where it supports it
    offers_na: bool = False  # NA is one of the answers asked for (so "none" is an answer, not a failure)

    def messages(self, words: list[str], examples: list[tuple[list[str], int]] | None = None) -> list[dict]:
        text = self.instruction.format(words=_word_list(words))
        if self.context and examples:
            lines = [" ".join(f"[[{w}]]" if i == pos else w for i, w in enumerate(sent)) for sent, pos in examples]
            text += "\n\nThe words in context, marked with [[ ]]:\n" + "\n".join(f"- {ln}" for ln in lines)
        return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": text}]


PROMPTS: dict[str, Prompt] = {
    "default": Prompt(
        "default",
        "Give a short, concise label that best describes this list of words:\n{words}\n"
        "Answer with the label only.",
        parse_label),
    "lexical": Prompt(
        "lexical",
        "Do the words in this list share a lexical pattern, such as a common n-gram, prefix or suffix?\n{words}\n"
        "Answer with the shared pattern only, or NA if there is none.",
        parse_na, offers_na=True),
    "pos": Prompt(
        "pos",
        "Which Penn Treebank part-of-speech tag do the words in this list share?\n{words}\n"
        "Answer with the tag only (for example NNS or VBD), or NA if they do not share one.",
        lambda t, f: parse_na(t, f, penn_tag), offers_na=True),
    "context": Prompt(
        "context",
        "Give a short, concise label that best describes this list of words, using the sentences "
        "below to see how they are used:\n{words}\nAnswer with the label only.",
        parse_label, context=True),
    "structured": Prompt(
        "structured",
        "Name the concept shared by this list of words:\n{words}\n"
        'Answer with JSON only: {{"label": a short, concise label, "description": one line, '
        '"type": one of ' + ", ".join(f'"{t}"' for t in CONCEPT_TYPES) + "}}. "
        'If the words share no concept, answer {{"label": null, "type": "uninterpretable"}}.',
        parse_structured, json_mode=True),
}


def get_prompt(prompt_id: str) -> Prompt:
    if prompt_id not in PROMPTS:
        raise UserError(f"prompt.id={prompt_id!r}: use one of {', '.join(PROMPTS)}")
    return PROMPTS[prompt_id]


def estimate_tokens(messages: list[dict]) -> int:
    """A rough count of prompt tokens (about 4 characters per token) for limits and dry runs."""
    return sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)


# ---------------------------------------------------------------- label scoring (detection)

def detection_messages(label: str, words: list[str]) -> list[dict]:
    """Ask which of the numbered words fit a label (the label-scoring prompt)."""
    listing = "\n".join(f"{i}. {w}" for i, w in enumerate(words, start=1))
    text = (f'A group of words was given the label "{label}".\n'
            f"Which of the following words fit this label?\n{listing}\n"
            'Answer with JSON only: {"fit": a list of the numbers of the words that fit}, for example {"fit": [1, 3]}, '
            'or {"fit": []} if none fits.')
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": text}]
