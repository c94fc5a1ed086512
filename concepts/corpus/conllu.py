"""CoNLL-U reader (https://universaldependencies.org/format.html).

Every gold column is kept as a tag set: lemma, upos, xpos, feats, head, deprel, deps, misc.
The running text (`Sentence.text`) is built from the surface tokens and their `SpaceAfter=No` /
`SpacesAfter=` (MISC); where `# text` differs from it, the tokens are located in `# text` instead,
and where they cannot be, the built text is used (counted as `text_mismatch`). The words of a
multi-word token take their share of its characters when their forms spell it (`do` + `n't`),
else they all take the whole token (`del` = `de` + `el`).

Multi-word tokens (`3-4 don't`): with `multiword="words"` (default) the syntactic words
(`do`, `n't`) are the units, as the annotation is on them; with `multiword="surface"` the
surface token is the unit and each tag is the `+`-joined tags of its words. Empty nodes
(`8.1`) are not part of the surface sentence and are skipped (counted).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from concepts.core.errors import UserError
from concepts.corpus.sentence import Sentence, locate_words
from concepts.corpus.textfile import source_name, text_lines

log = logging.getLogger(__name__)

COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
TAG_COLUMNS = COLUMNS[2:]
_WORD_ID = re.compile(r"^[1-9]\d*$")
_RANGE_ID = re.compile(r"^([1-9]\d*)-([1-9]\d*)$")
_EMPTY_ID = re.compile(r"^\d+\.[1-9]\d*$")
_TEXT = re.compile(r"^#\s*text\s*=")


@dataclass
class ConlluStats:
    sentences: int = 0
    multiword_tokens: int = 0
    empty_nodes: int = 0
    text_mismatch: int = 0  # `# text` that does not hold the tokens (the text built from them is used)


def _space_after(misc: str) -> str:
    """The whitespace after a token by its MISC column: `SpaceAfter=No` none, `SpacesAfter=` as
    written (`\\s` space, `\\t` tab, `\\n` newline), else one space."""
    if misc in ("_", ""):
        return " "
    for item in misc.split("|"):
        if item == "SpaceAfter=No":
            return ""
        if item.startswith("SpacesAfter="):
            v = item[len("SpacesAfter="):]
            return v.replace("\\s", " ").replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "").replace("\\\\", "\\")
    return " "


def _text_and_offsets(rows: list[list[str]], ranges: dict[int, tuple[int, str, str]], given: str | None,
                      stats: ConlluStats) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
    """`(text, surface token spans, syntactic word spans)` of one sentence (module docstring)."""
    surface: list[tuple[str, str, int, int]] = []  # form, space after, first word, last word (1-based)
    i = 1
    while i <= len(rows):
        if i in ranges:
            last, form, misc = ranges[i]
            surface.append((form, _space_after(misc), i, last))
            i = last + 1
        else:
            surface.append((rows[i - 1][1], _space_after(rows[i - 1][9]), i, i))
            i += 1
    parts, spans, pos = [], [], 0
    for k, (form, after, _, _) in enumerate(surface):
        spans.append((pos, pos + len(form)))
        parts.append(form)
        pos += len(form)
        if k < len(surface) - 1:
            parts.append(after)
            pos += len(after)
    text = "".join(parts)
    if given is not None and given != text:
        found = locate_words(given, [f for f, _, _, _ in surface])
        if found is None:
            stats.text_mismatch += 1
        else:
            text, spans = given, found
    words: list[tuple[int, int]] = []
    for (form, _, a, b), (start, end) in zip(surface, spans):
        forms = [rows[j - 1][1] for j in range(a, b + 1)]
        if a == b or "".join(forms) != form:
            words.extend([(start, end)] * (b - a + 1))
            continue
        for f in forms:
            words.append((start, start + len(f)))
            start += len(f)
    return text, spans, words


@dataclass
class _Block:
    """The lines of one sentence read so far."""

    start_line: int = 1
    rows: list[list[str]] = field(default_factory=list)  # word lines, 10 columns each
    row_lines: list[int] = field(default_factory=list)
    ranges: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # first id -> (last id, form, misc)
    sent_id: str = ""
    given_text: str | None = None


def read_conllu(
    path: Path, split: str = "", multiword: str = "words", stats: ConlluStats | None = None,
    encoding: str = "utf-8",
) -> Iterator[Sentence]:
    """Yield the sentences of one CoNLL-U file.

    Raises:
        UserError: naming the file and line of the first malformed line.
    """
    if multiword not in ("words", "surface"):
        raise UserError(f"corpus.multiword must be 'words' or 'surface', got {multiword!r}")
    stats = stats if stats is not None else ConlluStats()
    path = Path(path)
    name = source_name(path)
    block = _Block()
    lineno = 0
    for lineno, raw in text_lines(path, "CoNLL-U file", encoding):
        line = raw.rstrip("\n").rstrip("\r")
        if not line.strip():
            sent = _finish(block, path, name, split, multiword, stats)
            if sent is not None:
                yield sent
            block = _Block(start_line=lineno + 1)
        elif line.startswith("#"):
            if not block.rows and line.startswith("# sent_id"):
                block.sent_id = line.split("=", 1)[-1].strip()
            elif not block.rows and _TEXT.match(line):
                block.given_text = line.split("=", 1)[1].strip()
        else:
            _read_word_line(block, line, lineno, path, stats)
    sent = _finish(block, path, name, split, multiword, stats)
    if sent is not None:
        yield sent


def _bad(path: Path, lineno: int, why: str) -> UserError:
    return UserError(f"{path}:{lineno}: malformed CoNLL-U: {why}")


def _read_word_line(block: _Block, line: str, lineno: int, path: Path, stats: ConlluStats) -> None:
    """A word, multi-word token or empty node line into `block`."""
    cols = line.split("\t")
    if len(cols) != 10:
        raise _bad(path, lineno, f"expected 10 tab-separated columns, found {len(cols)}")
    tid = cols[0]
    if _WORD_ID.match(tid):
        if not cols[1]:
            raise _bad(path, lineno, "empty FORM column")
        block.rows.append(cols)
        block.row_lines.append(lineno)
    elif m := _RANGE_ID.match(tid):
        a, b = int(m.group(1)), int(m.group(2))
        if b <= a:
            raise _bad(path, lineno, f"multi-word token range {tid} is empty")
        block.ranges[a] = (b, cols[1], cols[9])
        stats.multiword_tokens += 1
    elif _EMPTY_ID.match(tid):
        stats.empty_nodes += 1
    else:
        raise _bad(path, lineno, f"ID column {tid!r} is not a word id, range or empty node")


def _finish(block: _Block, path: Path, name: str, split: str, multiword: str, stats: ConlluStats) -> Sentence | None:
    """The sentence of a complete block (None for a block without words)."""
    rows, ranges = block.rows, block.ranges
    if not rows:
        return None
    for k, r in enumerate(rows, start=1):
        if r[0] != str(k):
            raise _bad(path, block.row_lines[k - 1], f"word ids must run 1..n in order: expected {k}, found {r[0]}")
    for first, (last, _, _) in ranges.items():
        if last > len(rows):
            raise _bad(path, block.start_line, f"multi-word token {first}-{last} goes past the sentence end")
    stats.sentences += 1
    source = f"{name}:{block.start_line}"
    text, surface_spans, word_spans = _text_and_offsets(rows, ranges, block.given_text, stats)
    if multiword == "words" or not ranges:
        columns = list(zip(*rows))  # [10][n_words]
        tags = {c: list(columns[i]) for i, c in enumerate(COLUMNS) if i >= 2}
        return Sentence(list(columns[1]), tags, source=source, sent_id=block.sent_id, split=split, text=text,
                        offsets=word_spans)
    words, tags = _surface_words(rows, ranges)
    return Sentence(words, tags, source=source, sent_id=block.sent_id, split=split, text=text, offsets=surface_spans)


def _surface_words(rows: list[list[str]], ranges: dict) -> tuple[list[str], dict[str, list[str]]]:
    """Surface tokens: a multi-word token is one word, its tags joined with '+'."""
    words, tags = [], {c: [] for c in TAG_COLUMNS}
    i = 1
    while i <= len(rows):
        if i in ranges:
            last, form, _ = ranges[i]
            span = rows[i - 1 : last]
            words.append(form)
            for c in TAG_COLUMNS:
                tags[c].append("+".join(r[COLUMNS.index(c)] for r in span))
            i = last + 1
        else:
            words.append(rows[i - 1][1])
            for c in TAG_COLUMNS:
                tags[c].append(rows[i - 1][COLUMNS.index(c)])
            i += 1
    return words, tags
