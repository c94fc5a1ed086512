"""Load a corpus by config: pick the reader, apply the length filter and the sentence cap.

Long sentences are skipped and counted, never truncated. With `max_sentences`, a seeded
random subset is kept, in corpus order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from concepts.artifacts import file_fingerprint, fingerprint
from concepts.corpus.conllu import ConlluStats, read_conllu
from concepts.corpus.plain_text import read_plain_text
from concepts.corpus.sentence import Sentence
from concepts.corpus.tabular import read_table
from concepts.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("conllu", "text", "table")


@dataclass
class Corpus:
    sentences: list[Sentence]
    fingerprint: str
    stats: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def n_words(self) -> int:
        return sum(len(s) for s in self.sentences)


def _files_for(path: Path, fmt: str, splits: list[str]) -> list[tuple[Path, str]]:
    if path.is_file():
        return [(path, splits[0] if len(splits) == 1 else "")]
    suffix = {"conllu": ".conllu", "text": ".txt"}[fmt]
    found = sorted(path.glob(f"*{suffix}"))
    if not found:
        raise UserError(f"corpus folder {path} has no *{suffix} files (corpus.path, corpus.format={fmt})")
    if not splits:
        return [(p, "") for p in found]
    out = []
    for split in splits:
        match = [p for p in found if p.stem == split or p.stem.endswith(f"-{split}") or p.stem.endswith(f"_{split}")]
        if not match:
            raise UserError(
                f"corpus folder {path} has no file for split {split!r} (corpus.splits); "
                f"files: {', '.join(p.name for p in found)}"
            )
        out.extend((p, split) for p in match)
    return out


def load_corpus(cfg) -> Corpus:
    """Read the corpus described by a `CorpusConfig` (see `concepts.config`)."""
    fmt = cfg.format
    if fmt not in FORMATS:
        raise UserError(f"corpus.format={fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    splits = list(cfg.splits or [])
    stats: dict[str, int] = {}
    sentences: list[Sentence] = []
    files: list[str] = []
    if fmt == "table" and not Path(cfg.path).exists():
        for split in splits or ["train"]:
            sentences.extend(read_table(cfg.path, cfg.tokens_column, cfg.tag_columns, split, cfg.dataset_config))
        content_fp = fingerprint([cfg.path, splits])
    else:
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise UserError(
                f"corpus path {path} does not exist (corpus.path). Put the corpus there or point "
                f"corpus.path at it; the default corpus is UD English EWT, expected at "
                f"../shared/data/ud-english-ewt relative to the working folder."
            )
        if fmt == "table":
            sentences.extend(read_table(str(path), cfg.tokens_column, cfg.tag_columns, splits[0] if splits else "train"))
            paths = [path]
        else:
            pairs = _files_for(path, fmt, splits)
            paths = [p for p, _ in pairs]
            cstats = ConlluStats()
            for p, split in pairs:
                if fmt == "conllu":
                    sentences.extend(read_conllu(p, split, cfg.multiword, cstats))
                else:
                    sentences.extend(read_plain_text(p, cfg.tokenizer, split))
            if fmt == "conllu":
                stats.update(multiword_tokens=cstats.multiword_tokens, empty_nodes_skipped=cstats.empty_nodes)
        files = [str(p) for p in paths]
        content_fp = file_fingerprint(p for p in paths if p.is_file())
    stats["sentences_read"] = len(sentences)
    if not sentences:
        raise UserError(f"corpus {cfg.path} (splits {splits}) holds no sentences; check corpus.path and corpus.splits")
    keep = [s for s in sentences if cfg.max_sentence_length is None or len(s) <= cfg.max_sentence_length]
    stats["sentences_skipped_word_limit"] = len(sentences) - len(keep)
    if stats["sentences_skipped_word_limit"]:
        log.info(
            "skipped %d sentences longer than corpus.max_sentence_length=%d words",
            stats["sentences_skipped_word_limit"], cfg.max_sentence_length,
        )
    if cfg.max_sentences is not None and len(keep) > cfg.max_sentences:
        rng = np.random.default_rng(cfg.seed)
        chosen = np.sort(rng.choice(len(keep), size=cfg.max_sentences, replace=False))
        keep = [keep[i] for i in chosen]
    if not keep:
        raise UserError(f"no sentence of {cfg.path} is within corpus.max_sentence_length={cfg.max_sentence_length}")
    for i, s in enumerate(keep):
        s.index = i
    stats["sentences"] = len(keep)
    stats["words"] = sum(len(s) for s in keep)
    selection = {
        k: getattr(cfg, k)
        for k in ("format", "splits", "multiword", "tokenizer", "tokens_column", "tag_columns",
                  "max_sentences", "max_sentence_length", "seed")
    }
    selection = {k: list(v) if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, str) else v
                 for k, v in selection.items()}
    return Corpus(keep, fingerprint([content_fp, selection]), stats, files)
