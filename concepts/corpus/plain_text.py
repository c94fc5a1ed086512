"""Plain text reader: one sentence a line.

The line (stripped) is the sentence's running text. Tokenizers (`corpus.tokenizer`): `whitespace` splits on runs of whitespace; `regex` splits
words from punctuation with the pattern below (a stated rule, not a trained tokenizer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from concepts.core.errors import UserError
from concepts.corpus.sentence import Sentence
from concepts.corpus.textfile import source_name, text_lines

REGEX_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")
TOKENIZERS = ("whitespace", "regex")


def split_words(line: str, tokenizer: str) -> list[str]:
    return [w for w, _ in split_with_offsets(line, tokenizer)]


def split_with_offsets(line: str, tokenizer: str) -> list[tuple[str, tuple[int, int]]]:
    """The words of `line` and each one's `(start, end)` in it."""
    if tokenizer == "whitespace":
        return [(m.group(), m.span()) for m in re.finditer(r"\S+", line)]
    if tokenizer == "regex":
        return [(m.group(), m.span()) for m in REGEX_TOKEN.finditer(line)]
    raise UserError(f"corpus.tokenizer={tokenizer!r} is unknown; use one of {', '.join(TOKENIZERS)}")


def read_plain_text(path: Path, tokenizer: str = "whitespace", split: str = "",
                    encoding: str = "utf-8") -> Iterator[Sentence]:
    path = Path(path)
    split_words("", tokenizer)  # validate the option before reading
    for lineno, line in text_lines(path, "text file", encoding):
        text = line.strip()
        found = split_with_offsets(text, tokenizer)
        if found:  # the line is the running text the model reads
            yield Sentence([w for w, _ in found], {}, source=f"{source_name(path)}:{lineno}", split=split, text=text,
                           offsets=[span for _, span in found])
