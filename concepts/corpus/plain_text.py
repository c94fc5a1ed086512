"""Plain text reader: one sentence a line.

Tokenizers (`corpus.tokenizer`): `whitespace` splits on runs of whitespace; `regex` splits
words from punctuation with the pattern below (a stated rule, not a trained tokenizer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from concepts.corpus.sentence import Sentence
from concepts.corpus.textfile import source_name, text_lines
from concepts.errors import UserError

REGEX_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")
TOKENIZERS = ("whitespace", "regex")


def split_words(line: str, tokenizer: str) -> list[str]:
    if tokenizer == "whitespace":
        return line.split()
    if tokenizer == "regex":
        return REGEX_TOKEN.findall(line)
    raise UserError(f"corpus.tokenizer={tokenizer!r} is unknown; use one of {', '.join(TOKENIZERS)}")


def read_plain_text(path: Path, tokenizer: str = "whitespace", split: str = "",
                    encoding: str = "utf-8") -> Iterator[Sentence]:
    path = Path(path)
    split_words("", tokenizer)  # validate the option before reading
    for lineno, line in text_lines(path, "text file", encoding):
        words = split_words(line.strip(), tokenizer)
        if words:
            yield Sentence(words, {}, source=f"{source_name(path)}:{lineno}", split=split)
