"""Prompts for concept annotation and their strict reply parsers.

Every prompt turns a concept into chat messages and a reply into a `Parsed` result. A reply
that is a refusal, was stopped by a content filter, or does not have the expected form gets
that status and no label; it is never stored as a label.

Word-list cap (`max_words`): a concept whose tokens (with repeats) fit is shown whole, most
frequent type first. A larger one shows every type at least once and each type
`max(1, floor(count * max_words / total))` times, most frequent first, until `max_words`
words are listed; so a concept with more than `max_words` types shows its `max_words` most
frequent types once each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from concepts.errors import UserError

CONCEPT_TYPES = ("lexical", "morphological", "syntactic", "semantic", "uninterpretable")

# Penn Treebank tags (45 + the UD EWT extras ADD, AFX, GW, HYPH, NFP, XX).
PENN_TAGS = frozenset("""CC CD DT EX FW IN JJ JJR JJS LS MD NN NNS NNP NNPS PDT POS PRP PRP$ RB RBR RBS RP SYM TO
UH VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB $ # `` '' -LRB- -RRB- , . : ADD AFX GW HYPH NFP XX""".split())

_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry[,.!]|i apologi[sz]e|i can ?no?'?t|i cannot|i am unable|i'?m unable|"
    r"i won'?t|as an ai|i'?m not able|i am not able)", re.IGNORECASE)
_LABEL_PREFIX = re.compile(r"^\s*(label|answer|concept|pattern|tag)\s*:\s*", re.IGNORECASE)


@dataclass
class Parsed:
    status: str  # ok | none (the model said nothing applies) | refused | filtered | unparseable | error
    label: str | None = None
    description: str | None = None
    concept_type: str | None = None

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "none")


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


def _one_line(text: str) -> str:
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = _LABEL_PREFIX.sub("", line).strip().strip("*").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
        line = line[1:-1].strip()
    return line.rstrip(".").strip()


def _screen(text: str, finish_reason: str | None) -> Parsed | None:
    """The statuses every prompt shares: filtered, refused, empty."""
    if finish_reason == "content_filter":
        return Parsed("filtered")
    if not text or not text.strip():
        return Parsed("unparseable")
    if _REFUSAL.match(text.strip()):
        return Parsed("refused")
    return None


def _parse_label(text: str, finish_reason: str | None, max_label_words: int = 12) -> Parsed:
    early = _screen(text, finish_reason)
    if early:
        return early
    label = _one_line(text)
    if not label or len(label.split()) > max_label_words:
        return Parsed("unparseable")
    return Parsed("ok", label)


def _parse_na(text: str, finish_reason: str | None, check: Callable[[str], bool] = lambda s: True) -> Parsed:
    parsed = _parse_label(text, finish_reason, max_label_words=6)
    if parsed.status != "ok":
        return parsed
    if parsed.label.upper() in ("NA", "N/A", "NONE"):
        return Parsed("none")
    return parsed if check(parsed.label) else Parsed("unparseable")


def _json_reply(text: str):
    """The JSON value of a reply (optionally inside a ``` fence), or None."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    try:
        return json.loads(body)
    except ValueError:
        return None


def _parse_structured(text: str, finish_reason: str | None) -> Parsed:
    early = _screen(text, finish_reason)
    if early:
        return early
    obj = _json_reply(text)
    if obj is None:
        return Parsed("unparseable")
    if not isinstance(obj, dict) or not isinstance(obj.get("label"), str) or not obj["label"].strip():
        return Parsed("unparseable")
    ctype = obj.get("type", obj.get("concept_type"))
    if ctype is not None and (not isinstance(ctype, str) or ctype.lower() not in CONCEPT_TYPES):
        return Parsed("unparseable")
    desc = obj.get("description")
    return Parsed("ok", obj["label"].strip(), desc.strip() if isinstance(desc, str) else None,
                  ctype.lower() if ctype else None)


_SYSTEM = "You are a linguist who names the concept that a group of words from a language model shares."


@dataclass(frozen=True)
class Prompt:
    id: str
    instruction: str  # {words} is replaced by the word list
    parse: Callable[[str, str | None], Parsed]
    context: bool = False  # add example sentences with the word marked

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
        _parse_label),
    "lexical": Prompt(
        "lexical",
        "Do the words in this list share a lexical pattern, such as a common n-gram, prefix or suffix?\n{words}\n"
        "Answer with the shared pattern only, or NA if there is none.",
        _parse_na),
    "pos": Prompt(
        "pos",
        "Which Penn Treebank part-of-speech tag do the words in this list share?\n{words}\n"
        "Answer with the tag only (for example NNS or VBD), or NA if they do not share one.",
        lambda t, f: _parse_na(t, f, lambda s: s.upper() in PENN_TAGS)),
    "context": Prompt(
        "context",
        "Give a short, concise label that best describes this list of words, using the sentences "
        "below to see how they are used:\n{words}\nAnswer with the label only.",
        _parse_label, context=True),
    "structured": Prompt(
        "structured",
        "Name the concept shared by this list of words:\n{words}\n"
        'Answer with JSON only: {{"label": a short, concise label, "description": one line, '
        '"type": one of ' + ", ".join(f'"{t}"' for t in CONCEPT_TYPES) + "}}.",
        _parse_structured),
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
            "Answer with a JSON list of the numbers of the words that fit, for example [1, 3], or [] if none fits.")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": text}]


def parse_detection(text: str, finish_reason: str | None, n_words: int) -> tuple[str, list[int] | None]:
    """(status, chosen 0-based indices); a reply that is not a JSON list of valid numbers is unparseable."""
    early = _screen(text, finish_reason)
    if early:
        return early.status, None
    obj = _json_reply(text)
    if obj is None:
        return "unparseable", None
    if not isinstance(obj, list) or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= n_words for x in obj):
        return "unparseable", None
    return "ok", sorted({x - 1 for x in obj})
