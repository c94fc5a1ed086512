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

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})
# a refusal: at the start of the reply, or a first sentence that says the model cannot or will not
_REFUSAL_START = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry(?:[,.!]|\s+(?:but|i)\b)|i apologi[sz]e|my apologies|i can ?no?'?t\b|i cannot|i can not|"
    r"i am unable|i'?m unable|i won'?t|i will not|as an ai\b|as a language model|as an? (ai )?assistant|"
    r"i'?m not able|i am not able|i must (?:respectfully )?decline|i do not feel comfortable|i don'?t feel comfortable|"
    r"i'?m afraid|unfortunately\b|regrettably\b)", re.IGNORECASE)
_REFUSAL_ANY = re.compile(
    r"\b(i (?:can ?no?'?t|cannot|can not|am unable to|'?m unable to|won'?t|will not|must decline)\b|"
    r"as an ai\b|as a language model|as an ai language model|unable to (?:help|assist|provide|comply|fulfil)|"
    r"i must (?:respectfully )?decline)",
    re.IGNORECASE)
_NONE_WORDS = {"na", "n/a", "n.a.", "none", "null", "nil", "no label", "not applicable", "no pattern", "no tag",
               "unknown", "-", "--", "nothing"}
_PREAMBLE = re.compile(
    r"^\W*(sure|certainly|of course|absolutely|okay|ok|alright|yes|great|here(?:'s| is| are)|the (?:best )?"
    r"(?:label|answer|tag|pattern)s? (?:is|would be)|based on|looking at|after (?:reviewing|analy[sz]ing))\b",
    re.IGNORECASE)
_KEYED = re.compile(r"^\s*(?:the\s+)?(?:concise\s+|short\s+|final\s+|best\s+|shared\s+)?(label|answer|concept|pattern|tag|"
                    r"category|name)(?:\s*[:=]\s*|\s+-\s+|\s+(?:is|would be)\s*[:=]?\s*)(.*)$", re.IGNORECASE)
_MARKDOWN = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-+*•·]\s+|\d+[.)]\s+)*|\s+$")
_THINK = re.compile(r"<(think|thinking|reasoning|reflection)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_OPEN_THINK = re.compile(r"<(think|thinking|reasoning|reflection)>", re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)\n?```", re.DOTALL)
_JSON_KEYS = ("label", "answer", "concept", "name", "tag", "pattern", "category", "title")


@dataclass
class Parsed:
    status: str  # ok | none (nothing applies) | refused | filtered | truncated | unparseable | error
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


def strip_reasoning(text: str) -> str | None:
    """The reply without reasoning blocks (`<think>...</think>` and the like); None when the
    reply is reasoning only (an unterminated block: the answer was never reached)."""
    text = _THINK.sub("", text or "")
    m = _OPEN_THINK.search(text)
    if m:
        text = text[:m.start()]
        return text if text.strip() else None
    return text


def _is_refusal(text: str) -> bool:
    t = text.translate(_APOSTROPHES).strip()
    first = re.split(r"(?<=[.!?])\s|\n", t, maxsplit=1)[0]
    return bool(_REFUSAL_START.match(t) or _REFUSAL_ANY.search(first))


def _clean(line: str) -> str:
    """One label line without markdown, quotes, a trailing period."""
    line = _MARKDOWN.sub("", line.strip()).strip()
    for _ in range(3):
        line = re.sub(r"^(\*\*|__|\*|_)(.+?)\1$", r"\2", line).strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
            line = line[1:-1].strip()
    if len(line) >= 2 and line[0] in "\u201c\u2018" and line[-1] in "\u201d\u2019":
        line = line[1:-1].strip()
    return line.rstrip(".").strip()


def _json_label(obj) -> tuple[str | None, dict]:
    """(label, the object) of a parsed JSON reply: an object with a label-like key, a string, or
    a one-string list."""
    if isinstance(obj, str):
        return obj, {}
    if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], (str, dict)):
        return _json_label(obj[0])
    if isinstance(obj, dict):
        lower = {str(k).lower(): v for k, v in obj.items()}
        for key in _JSON_KEYS:
            if isinstance(lower.get(key), str):
                return lower[key], lower
        strings = [v for v in lower.values() if isinstance(v, str)]
        if len(lower) == 1 and len(strings) == 1:
            return strings[0], lower
    return None, {}


def _json_value(text: str):
    """The JSON value in a reply: the whole reply, a ``` fence, or the first {...} / [...] in it."""
    body = text.strip()
    candidates = [body] + [m.group(1) for m in _FENCE.finditer(body)]
    for opener, closer in (("{", "}"), ("[", "]")):
        i, j = body.find(opener), body.rfind(closer)
        if 0 <= i < j:
            candidates.append(body[i:j + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except ValueError:
            continue
    return None


def _label_from_text(text: str) -> str | None:
    """Recover the label line: inside a code fence or JSON, after a `Label:` key, after a
    preamble line ("Sure! Here is the label:"), else the first line. None if nothing is left."""
    body = text.strip()
    if body.startswith(("{", "[", "```")) or _FENCE.search(body):
        obj = _json_value(body)
        if obj is not None:
            label, _ = _json_label(obj)
            return _clean(label) if label else None
        fences = [m.group(1) for m in _FENCE.finditer(body)]
        if fences:
            body = "\n".join(fences)
        body = body.replace("```", "")
    lines = [ln for ln in (_MARKDOWN.sub("", x.replace("**", "").replace("__", "")).strip()
                           for x in body.splitlines()) if ln]
    for i, line in enumerate(lines):
        keyed = _KEYED.match(line)
        if keyed:
            rest = _clean(keyed.group(2))
            if rest:
                return rest
            return _clean(lines[i + 1]) if i + 1 < len(lines) else None
        if _PREAMBLE.match(line):
            after = re.split(r":\s*", line, maxsplit=1)
            if len(after) == 2 and _clean(after[1]):
                return _clean(after[1])
            continue
        return _from_sentence(line)
    return None


_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d|\*\*([^*]+)\*\*')
_LABEL_WORD_COLON = re.compile(r"\b(?:label|answer|tag|pattern|category|name)\b[^:]{0,40}:\s*(.+)$", re.IGNORECASE)


def _from_sentence(line: str) -> str:
    """A label line as is, unless it is a sentence around the label: "A suitable label would be:
    Animals" -> "Animals"; 'The label for these words could be "Animals".' -> "Animals"."""
    keyed = _LABEL_WORD_COLON.search(line)
    if keyed and _clean(keyed.group(1)):
        return _clean(keyed.group(1))
    if len(line.split()) > 4:
        quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(line)]
        if len(quoted) == 1 and _clean(quoted[0]):
            return _clean(quoted[0])
    return _clean(line)


def _screen(text: str, finish_reason: str | None) -> tuple[Parsed | None, str]:
    """The statuses every prompt shares (filtered, truncated, refused, empty) and the reply
    without reasoning blocks."""
    if finish_reason == "content_filter":
        return Parsed("filtered"), ""
    if finish_reason == "refusal":
        return Parsed("refused"), ""
    if finish_reason == "length":
        return Parsed("truncated"), ""
    body = strip_reasoning(text)
    if body is None or not body.strip() or not body.replace("`", "").strip() or re.fullmatch(r"\s*```\w*\s*", body):
        return Parsed("unparseable"), ""
    if _is_refusal(body):
        return Parsed("refused"), ""
    return None, body


def _parse_label(text: str, finish_reason: str | None, max_label_words: int = 12) -> Parsed:
    early, body = _screen(text, finish_reason)
    if early:
        return early
    label = _label_from_text(body)
    if not label or not re.search(r"\w", label):
        return Parsed("unparseable")
    if label.lower() in _NONE_WORDS:
        return Parsed("none")
    if _is_refusal(label) or len(label.split()) > max_label_words:
        return Parsed("refused") if _is_refusal(label) else Parsed("unparseable")
    return Parsed("ok", label)


def _parse_na(text: str, finish_reason: str | None, check: Callable[[str], str | None] = lambda s: s) -> Parsed:
    """A label or NA; `check` turns the label into its normal form, or None when it is not one."""
    parsed = _parse_label(text, finish_reason, max_label_words=6)
    if parsed.status != "ok":
        return parsed
    normal = check(parsed.label)
    return Parsed("ok", normal) if normal else Parsed("unparseable")


def penn_tag(label: str) -> str | None:
    """The Penn Treebank tag in a reply's label, upper-cased ("nns" -> "NNS", "NNS (plural
    nouns)" -> "NNS"); None when there is no single tag."""
    whole = label.strip().upper()
    if whole in PENN_TAGS:
        return whole
    found = {t.upper() for t in re.findall(r"[A-Za-z$]+", label) if t.upper() in PENN_TAGS and (t.isupper() or t == label)}
    return found.pop() if len(found) == 1 else None


def _parse_structured(text: str, finish_reason: str | None) -> Parsed:
    early, body = _screen(text, finish_reason)
    if early:
        return early
    obj = _json_value(body)
    label, fields = _json_label(obj) if obj is not None else (None, {})
    if not label or not label.strip() or not fields:
        return Parsed("unparseable")
    label = _clean(label)
    if label.lower() in _NONE_WORDS:
        return Parsed("none")
    if _is_refusal(label):
        return Parsed("refused")
    ctype = fields.get("type", fields.get("concept_type"))
    if ctype is not None and (not isinstance(ctype, str) or ctype.lower() not in CONCEPT_TYPES):
        return Parsed("unparseable")
    desc = fields.get("description")
    return Parsed("ok", label, desc.strip() if isinstance(desc, str) else None, ctype.lower() if ctype else None)


_SYSTEM = "You are a linguist who names the concept that a group of words from a language model shares."


@dataclass(frozen=True)
class Prompt:
    id: str
    instruction: str  # {words} is replaced by the word list
    parse: Callable[[str, str | None], Parsed]
    context: bool = False  # add example sentences with the word marked
    json_mode: bool = False  # ask the server for a JSON object (response_format) where it supports it

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
        lambda t, f: _parse_na(t, f, penn_tag)),
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
        _parse_structured, json_mode=True),
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


def parse_detection(text: str, finish_reason: str | None, n_words: int) -> tuple[str, list[int] | None]:
    """(status, chosen 0-based indices). Accepted shapes: a JSON list of numbers (bare, fenced
    or after a preamble), an object holding one such list (as JSON mode returns, e.g.
    {"fit": [1, 3]}), numbers as strings, or a plain "1, 3" / "none". Anything else, or a
    number outside 1..n_words, is unparseable."""
    early, body = _screen(text, finish_reason)
    if early:
        return early.status, None
    obj = _json_value(body)
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        obj = lists[0] if len(lists) == 1 else None
    if obj is None:
        plain = body.strip().rstrip(".").strip()
        if plain.lower() in ("none", "[]", "no words", "none of them"):
            return "ok", []
        if not re.fullmatch(r"\d+(\s*(,|;|and|\s)\s*\d+)*", plain):
            return "unparseable", None
        obj = [int(x) for x in re.findall(r"\d+", plain)]
    if not isinstance(obj, list):
        return "unparseable", None
    out = []
    for x in obj:
        if isinstance(x, str) and x.strip().isdigit():
            x = int(x.strip())
        if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= n_words:
            return "unparseable", None
        out.append(x - 1)
    return "ok", sorted(set(out))
