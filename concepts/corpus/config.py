"""The corpus section of every app's config (`corpus.*`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from concepts.core.errors import UserError


@dataclass
class CorpusConfig:
    name: str = "ewt"
    format: str = "conllu"  # conllu | text | table
    # a file or folder, or a corpus shipped in the package; honours $CONCEPTS_EWT like the YAML
    path: str = field(default_factory=lambda: os.environ.get("CONCEPTS_EWT", "builtin:ud-english-ewt"))
    splits: list[str] = field(default_factory=lambda: ["train"])
    multiword: str = "words"  # conllu: words | surface
    tokenizer: str = "whitespace"  # text: whitespace | regex
    encoding: str = "utf-8"  # conllu, text: the files' text encoding (latin-1, cp1252, utf-16, ...)
    tokens_column: str = "tokens"  # table
    tag_columns: list[str] = field(default_factory=list)  # table
    dataset_config: str | None = None  # table: the datasets config name
    max_sentences: int | None = None
    max_sentence_length: int | None = 128  # words; longer sentences are skipped and counted
    seed: int = 0
    stream_above: int = 50_000  # a corpus with more sentences is re-read for each pass, never held in memory whole
    shard: int = 0  # this job's part ...
    num_shards: int = 1  # ... of this many (Hydra multirun: corpus.shard=0,1,2 corpus.num_shards=3)

    def __post_init__(self) -> None:
        if self.format not in ("conllu", "text", "table"):
            raise UserError(f"corpus.format={self.format!r}: use conllu, text or table")
        if self.multiword not in ("words", "surface"):
            raise UserError(f"corpus.multiword={self.multiword!r}: use words or surface")
        if self.tokenizer not in ("whitespace", "regex"):
            raise UserError(f"corpus.tokenizer={self.tokenizer!r}: use whitespace or regex")
        if self.max_sentences is not None and self.max_sentences < 1:
            raise UserError(f"corpus.max_sentences={self.max_sentences} must be at least 1 (or null)")
        if self.max_sentence_length is not None and self.max_sentence_length < 1:
            raise UserError(f"corpus.max_sentence_length={self.max_sentence_length} must be at least 1 (or null)")
        if self.stream_above < 0:
            raise UserError(f"corpus.stream_above={self.stream_above} must be at least 0 (0: always stream)")
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise UserError(
                f"corpus.shard={self.shard} corpus.num_shards={self.num_shards}: need 0 <= shard < num_shards"
            )
