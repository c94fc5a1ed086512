"""Load a corpus by config: pick the reader, apply the length filter and the sentence cap.

Long sentences are skipped and counted, never truncated. With `max_sentences`, a seeded
random subset is kept, in corpus order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import numpy as np

from concepts.core.errors import UserError
from concepts.core.runtime import gc_paused
from concepts.corpus.conllu import ConlluStats, read_conllu
from concepts.corpus.plain_text import read_plain_text
from concepts.corpus.sentence import Sentence
from concepts.corpus.tabular import read_table
from concepts.corpus.textfile import source_name

log = logging.getLogger(__name__)

FORMATS = ("conllu", "text", "table")


@dataclass
class Corpus:
    """The sentences of a corpus after the length filter and the sentence cap, with their
    fingerprint and counts. A corpus of at most `corpus.stream_above` sentences is held in memory;
    a larger one is read again from its source for each pass (`iter_sentences`, `shards`), so
    memory stays bounded by what a pass holds, not by the corpus."""

    fingerprint: str
    stats: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    n_sentences: int = 0
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # `[n_sentences]` words each
    held: list[Sentence] | None = None  # the sentences, when held in memory
    read_again: Callable[[], Iterator[Sentence]] | None = None  # else: a fresh pass over them

    @property
    def sentences(self) -> list[Sentence]:
        """Every sentence as a list (reads a streamed corpus whole: for small corpora and tests)."""
        return self.held if self.held is not None else list(self.iter_sentences())

    @property
    def n_words(self) -> int:
        return self.stats["words"]

    def iter_sentences(self) -> Iterator[Sentence]:
        """The sentences in order, `index` 0..n-1."""
        return iter(self.held) if self.held is not None else self.read_again()

    def shards(self, step: int, wanted=None) -> Iterator[tuple[int, list[Sentence]]]:
        """`(k, sentences k*step .. (k+1)*step - 1)` for each shard k (or each k in `wanted`), in order."""
        if self.held is not None:
            for k in range(-(-self.n_sentences // step)):
                if wanted is None or k in wanted:
                    yield k, self.held[k * step : (k + 1) * step]
            return
        buf: list[Sentence] = []
        k = 0
        for s in self.iter_sentences():
            if wanted is None or k in wanted:
                buf.append(s)
            if s.index % step == step - 1 or s.index == self.n_sentences - 1:
                if buf:
                    yield k, buf
                buf, k = [], k + 1


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


def sentences_fingerprint(sentences: Iterable[Sentence]) -> str:
    """Content hash of the sentences as read and selected (words, tags, ids, order): every corpus
    option that changes them (files, splits, encoding, tokenizer, length limit, sample...) changes
    it, and no other (a copied file or an unused option does not)."""
    h = _Hasher()
    for s in sentences:
        h.add(s)
    return h.digest()


class _Hasher:
    """`sentences_fingerprint`, one sentence at a time."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def add(self, s: Sentence) -> None:
        self.h.update(json.dumps(s.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        self.h.update(b"\n")

    def digest(self) -> str:
        return self.h.hexdigest()[:16]


def _reader(cfg, stats: dict[str, int] | None = None) -> tuple[Callable[[], Iterator[Sentence]], list[str]]:
    """A function that starts a pass over the corpus's raw sentences (reader counts go into
    `stats` on the pass it is given to), and the files read."""
    fmt = cfg.format
    splits = list(cfg.splits or [])
    if fmt == "table" and not Path(cfg.path).exists():
        def hub() -> Iterator[Sentence]:
            for split in splits or ["train"]:
                yield from read_table(cfg.path, cfg.tokens_column, cfg.tag_columns, split, cfg.dataset_config)
        return hub, []
    path = resolve_corpus_path(cfg.path)
    if not path.exists():
        raise UserError(
            f"corpus path {path} does not exist (corpus.path). Put the corpus there or point "
            f"corpus.path at it; the default, {BUILTIN}ud-english-ewt, is UD English EWT as shipped with the package."
        )
    if fmt == "table":
        return (lambda: read_table(str(path), cfg.tokens_column, cfg.tag_columns, splits[0] if splits else "train")), [str(path)]
    pairs = _files_for(path, fmt, splits)

    def files() -> Iterator[Sentence]:
        cstats = ConlluStats()
        for p, split in pairs:
            if fmt == "conllu":
                yield from read_conllu(p, split, cfg.multiword, cstats, cfg.encoding)
            else:
                yield from read_plain_text(p, cfg.tokenizer, split, cfg.encoding)
        if fmt == "conllu" and stats is not None:
            stats.update(multiword_tokens=cstats.multiword_tokens, empty_nodes_skipped=cstats.empty_nodes,
                         text_mismatch=cstats.text_mismatch)
    return files, [str(p) for p, _ in pairs]


def _select(raw: Iterator[Sentence], max_length: int | None, chosen: np.ndarray | None) -> Iterator[Sentence]:
    """The sentences within the length limit, and of those the `chosen` (sorted positions; None:
    all), numbered 0..n-1 in order."""
    j = p = out = 0
    for s in raw:
        if max_length is not None and len(s) > max_length:
            continue
        if chosen is None or (p < len(chosen) and chosen[p] == j):
            p += chosen is not None
            s.index = out
            out += 1
            yield s
        j += 1


_LAST: dict = {}  # the last corpus this process loaded, and its key


def load_corpus(cfg) -> Corpus:
    """Read the corpus described by a `CorpusConfig` (see `concepts.corpus.config`): a first pass counts
    and fingerprints it (and holds the sentences when there are at most `cfg.stream_above`); a
    larger corpus with a sentence cap takes a second pass for its fingerprint, without holding it.

    The last corpus loaded is kept: loading it again with the same options, from files of the same
    sizes and modification times, reads nothing (each stage of a pipeline names its store by the
    corpus's fingerprint, which costs a pass over the corpus)."""
    key = _cache_key(cfg)
    if key is not None and _LAST.get("key") == key:
        log.debug("corpus %s: unchanged since it was loaded, not read again", cfg.path)
        return _LAST["corpus"]
    with gc_paused():
        corpus = _load_corpus(cfg)
    if key is not None:
        _LAST.update(key=key, corpus=corpus)
    return corpus


def _cache_key(cfg) -> str | None:
    """What a loaded corpus depends on: its options and its files' sizes and modification times
    (None for a dataset from the Hub, which is not kept)."""
    _, files = _reader(cfg)
    if not files:
        return None
    opts = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    stats = [(f, (st := Path(f).stat()).st_size, st.st_mtime_ns) for f in files]
    return json.dumps({"options": opts, "files": stats}, sort_keys=True, default=str)


def _load_corpus(cfg) -> Corpus:
    fmt = cfg.format
    if fmt not in FORMATS:
        raise UserError(f"corpus.format={fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    splits = list(cfg.splits or [])
    stats: dict[str, int] = {}
    start, files = _reader(cfg, stats)
    read = kept = 0
    held: list[Sentence] | None = []
    limit = cfg.max_sentence_length
    # a corpus too large to hold is fingerprinted in this pass too (its words counted), so that
    # without a sentence cap (corpus.max_sentences) no second pass is needed
    hasher: _Hasher | None = None
    lengths_seen = array("i")
    for s in start():
        read += 1
        if limit is not None and len(s) > limit:
            continue
        kept += 1
        if held is not None:
            held.append(s)
            if len(held) > cfg.stream_above:  # too many to hold: later passes read the source again
                hasher = _Hasher()
                for i, h in enumerate(held):
                    h.index = i
                    hasher.add(h)
                    lengths_seen.append(len(h))
                held = None
        else:
            s.index = kept - 1
            hasher.add(s)
            lengths_seen.append(len(s))
    stats["sentences_read"] = read
    if not read:
        raise UserError(f"corpus {cfg.path} (splits {splits}) holds no sentences; check corpus.path and corpus.splits")
    stats["sentences_skipped_word_limit"] = read - kept
    if stats["sentences_skipped_word_limit"]:
        log.info("skipped %d sentences longer than corpus.max_sentence_length=%d words",
                 stats["sentences_skipped_word_limit"], limit)
    chosen = None
    if cfg.max_sentences is not None and kept > cfg.max_sentences:
        rng = np.random.default_rng(cfg.seed)
        chosen = np.sort(rng.choice(kept, size=cfg.max_sentences, replace=False))
    if not kept:
        raise UserError(f"no sentence of {cfg.path} is within corpus.max_sentence_length={limit}")
    n = len(chosen) if chosen is not None else kept
    if held is not None or n <= cfg.stream_above:  # held in memory, as selected
        keep = list(_select(iter(held) if held is not None else start(), None if held is not None else limit, chosen))
        lengths = np.array([len(s) for s in keep], dtype=np.int32)
        stats["sentences"] = len(keep)
        stats["words"] = int(lengths.sum())
        return Corpus(sentences_fingerprint(keep), stats, files, len(keep), lengths, held=keep)

    def again() -> Iterator[Sentence]:
        return _select(start(), limit, chosen)

    log.info("corpus of %d sentences (more than corpus.stream_above=%d): read from %s for each pass, not held in memory",
             n, cfg.stream_above, cfg.path)
    if chosen is None:  # the pass above saw exactly these sentences
        fp, lengths = hasher.digest(), np.frombuffer(lengths_seen, dtype=np.int32).copy()
    else:
        lengths = np.zeros(n, dtype=np.int32)

        def counted() -> Iterator[Sentence]:
            for s in again():
                lengths[s.index] = len(s)
                yield s
        fp = sentences_fingerprint(counted())
    stats["sentences"] = n
    stats["words"] = int(lengths.sum())
    return Corpus(fp, stats, files, n, lengths, read_again=again)
