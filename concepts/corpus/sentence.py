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
    """

    words: list[str]
    tags: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    sent_id: str = ""
    split: str = ""
    index: int = -1

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
        }

    @classmethod
    def from_json(cls, d: dict) -> Sentence:
        return cls(
            words=list(d["words"]),
            tags={k: list(v) for k, v in d.get("tags", {}).items()},
            source=d.get("source", ""),
            sent_id=d.get("sent_id", ""),
            split=d.get("split", ""),
            index=d.get("index", -1),
        )
