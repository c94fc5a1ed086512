"""Load a corpus by config: pick the reader, apply the length filter and the sentence cap.

Long sentences are skipped and counted, never truncated. With `max_sentences`, a seeded
random subset is kept, in corpus order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from concepts.corpus.conllu import ConlluStats, read_conllu
from concepts.corpus.plain_text import read_plain_text
from concepts.corpus.sentence import Sentence
from concepts.corpus.tabular import read_table
from concepts.corpus.textfile import source_name
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
    found = sorted({*path.glob(f"*{suffix}"), *path.glob(f"*{suffix}.xz")})  # plain or xz-compressed
    if not found:
        raise UserError(f"corpus folder {path} has no *{suffix} files (corpus.path, corpus.format={fmt})")
    if not splits:
        return [(p, "") for p in found]

    def stem(p: Path) -> str:
        return source_name(p).removesuffix(suffix)

    out = []
    for split in splits:
        match = [p for p in found if stem(p) == split or stem(p).endswith((f"-{split}", f"_{split}"))]
        if not match:
            raise UserError(
                f"corpus folder {path} has no file for split {split!r} (corpus.splits); "
                f"files: {', '.join(p.name for p in found)}"
            )
        out.extend((p, split) for p in match)
    return out


BUILTIN = "builtin:"
CORPUS_DATA = Path(__file__).resolve().parent.parent / "data"  # corpora shipped with the package


def resolve_corpus_path(path: str) -> Path:
    """`builtin:<name>` is a corpus shipped in the package (`concepts/data/<name>`); other values
    are paths (`~` expanded)."""
    if path.startswith(BUILTIN):
        name = path[len(BUILTIN):]
        folder = CORPUS_DATA / name
        if not folder.is_dir():
            have = ", ".join(sorted(p.name for p in CORPUS_DATA.iterdir() if p.is_dir())) if CORPUS_DATA.exists() else "none"
            raise UserError(f"corpus.path={path!r}: no built-in corpus {name!r} (built-in: {have})")
        return folder
    return Path(path).expanduser()


def sentences_fingerprint(sentences: list[Sentence]) -> str:
    """Content hash of the sentences as read and selected (words, tags, ids, order): every corpus
    option that changes them (files, splits, encoding, tokenizer, length limit, sample...) changes
    it, and no other (a copied file or an unused option does not)."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(json.dumps(s.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


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
    else:
        path = resolve_corpus_path(cfg.path)
        if not path.exists():
            raise UserError(
                f"corpus path {path} does not exist (corpus.path). Put the corpus there or point "
                f"corpus.path at it; the default, {BUILTIN}ud-english-ewt, is UD English EWT as shipped with the package."
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
                    sentences.extend(read_conllu(p, split, cfg.multiword, cstats, cfg.encoding))
                else:
                    sentences.extend(read_plain_text(p, cfg.tokenizer, split, cfg.encoding))
            if fmt == "conllu":
                stats.update(multiword_tokens=cstats.multiword_tokens, empty_nodes_skipped=cstats.empty_nodes)
        files = [str(p) for p in paths]
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
    return Corpus(keep, sentences_fingerprint(keep), stats, files)
