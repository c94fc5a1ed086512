"""The record every corpus reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sentence:
    """One pre-split sentence with optional gold tags.

    Attributes:
        words: the words, in order; representations are computed per word.
        tags: tag set name -> one string per word (for CoNLL-U: upos, xpos, lemma, feats,
            head, deprel, deps, misc). Every list has `len(words)` items.
        source: where it came from (file and line, or dataset and row), for messages.
        sent_id: the corpus's own id when it has one.
        split: train/dev/test or the dataset split.
        index: position in the loaded corpus after filtering (0..n-1), set by `load_corpus`.
        text: the sentence as running text, when the corpus has it (CoNLL-U `# text` and
            `SpaceAfter=No`, a line of a text file); None: the words joined by single spaces.
        offsets: with `text`, `[n_words]` `(start, end)` character span of each word in it. The
            spans are in order and do not overlap, except that the words of a CoNLL-U multi-word
            token whose forms do not spell it (`del` = `de` + `el`) share the token's span.
    """

    words: list[str]
    tags: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    sent_id: str = ""
    split: str = ""
    index: int = -1
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "sent_id": self.sent_id,
            "split": self.split,
            "source": self.source,
            "words": self.words,
            "tags": self.tags,
            **({"text": self.text, "offsets": [list(o) for o in self.offsets]} if self.text is not None else {}),
        }

    def running_text(self) -> tuple[str, list[tuple[int, int]]]:
        """The text the model reads, and each word's `(start, end)` character span in it: the
        corpus's own text when it has one, else the words joined by single spaces."""
        if self.text is not None and self.offsets is not None:
            return self.text, self.offsets
        return join_words(self.words)

    @classmethod
    def from_json(cls, d: dict) -> Sentence:
        return cls(
            words=list(d["words"]),
            tags={k: list(v) for k, v in d.get("tags", {}).items()},
            source=d.get("source", ""),
            sent_id=d.get("sent_id", ""),
            split=d.get("split", ""),
            index=d.get("index", -1),
            text=d.get("text"),
            offsets=[(int(a), int(b)) for a, b in d["offsets"]] if d.get("text") is not None else None,
        )


def join_words(words: list[str], space_after: list[bool] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """`words` as running text, with a single space after each word (where `space_after` is None
    or true): `(text, [(start, end) of each word])`."""
    parts, offsets, pos = [], [], 0
    for i, w in enumerate(words):
        offsets.append((pos, pos + len(w)))
        parts.append(w)
        pos += len(w)
        if i < len(words) - 1 and (space_after is None or space_after[i]):
            parts.append(" ")
            pos += 1
    return "".join(parts), offsets


def locate_words(text: str, words: list[str]) -> list[tuple[int, int]] | None:
    """Each word's `(start, end)` in `text`, found in order, each at the next position where it
    occurs after skipping whitespace; None when a word is not there (the text does not hold the
    words as written)."""
    out, pos = [], 0
    for w in words:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith(w, pos):
            return None
        out.append((pos, pos + len(w)))
        pos += len(w)
    return out
