"""Word-to-subword alignment: turn pre-split sentences into model inputs ("segments").

A segment is one model input: the subword ids of a run of whole words, with special tokens,
and for each word its subword span `[start, end)` in the input. A sentence is one segment,
or with `long_sentences=window` several overlapping ones; each word is then taken from the
segment where it sits farthest from an edge (`own` marks those words).

A word that tokenizes to nothing (a lone control or zero-width character, say) is replaced by
the tokenizer's unknown token (or `-` where there is none), so no word is ever dropped; the
replacement is recorded per word.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from concepts.corpus import Sentence

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """One model input.

    Attributes:
        sentence: index of the sentence within the shard.
        word_offset: index of the segment's first word within the sentence.
        input_ids: subword ids with special tokens, `[T]`.
        spans: `[n_words, 2]` int, subword span of each word in `input_ids`.
        own: `[n_words]` bool, words whose vector is taken from this segment.
    """

    sentence: int
    word_offset: int
    input_ids: list[int]
    spans: np.ndarray
    own: np.ndarray


@dataclass
class EncodedShard:
    segments: list[Segment] = field(default_factory=list)
    n_subwords: dict[int, np.ndarray] = field(default_factory=dict)  # sentence -> [n_words]
    replaced: dict[int, np.ndarray] = field(default_factory=dict)  # sentence -> [n_words] bool
    skipped: list[int] = field(default_factory=list)  # sentences left out (too long)


def _spans(word_ids: list[int | None], n_words: int) -> np.ndarray:
    """`[n_words, 2]` subword span of each word; `-1` rows for words with no subword."""
    wid = np.fromiter((-1 if w is None else w for w in word_ids), dtype=np.int64, count=len(word_ids))
    pos = np.flatnonzero(wid >= 0)
    w = wid[pos]
    spans = np.full((n_words, 2), -1, dtype=np.int64)
    spans[w[::-1], 0] = pos[::-1]  # repeated indices keep the last write: the first subword
    spans[w, 1] = pos + 1  # ... here the last subword
    return spans


def _windows(counts: np.ndarray, budget: int) -> list[tuple[int, int]] | None:
    """Half-overlapping windows of whole words, each at most `budget` subwords."""
    if counts.max() > budget:
        return None
    n, out, start = len(counts), [], 0
    while True:
        end, total = start, 0
        while end < n and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        out.append((start, end))
        if end >= n:
            return out
        half, acc, nxt = total / 2, 0, start
        while nxt < end and acc + counts[nxt] <= half:
            acc += counts[nxt]
            nxt += 1
        start = max(nxt, start + 1)


def encode_shard(
    tokenizer, sentences: list[Sentence], max_length: int, n_special: int, long_sentences: str
) -> EncodedShard:
    """Tokenize a shard's sentences into segments (see module docstring)."""
    out = EncodedShard()
    words = [list(s.words) for s in sentences]
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False)
    redo, first_spans = [], []
    for i, w in enumerate(words):
        spans = _spans(enc.word_ids(i), len(w))
        first_spans.append(spans)
        empty = spans[:, 0] < 0
        out.replaced[i] = empty
        if empty.any():
            fill = tokenizer.unk_token or "-"
            words[i] = [fill if e else x for x, e in zip(w, empty)]
            redo.append(i)
    if redo:
        log.debug("%d sentences had words that tokenize to nothing; replaced by the unknown token", len(redo))
        enc2 = tokenizer([words[i] for i in redo], is_split_into_words=True, add_special_tokens=True, truncation=False)
    redo_pos = {i: k for k, i in enumerate(redo)}
    budget = max_length - n_special
    for i, w in enumerate(words):
        if i in redo_pos:
            ids, spans = enc2["input_ids"][redo_pos[i]], _spans(enc2.word_ids(redo_pos[i]), len(w))
        else:
            ids, spans = enc["input_ids"][i], first_spans[i]
        if (spans[:, 0] < 0).any():
            raise RuntimeError(f"sentence {sentences[i].source}: a word still has no subword after replacement")
        counts = spans[:, 1] - spans[:, 0]
        out.n_subwords[i] = counts
        if len(ids) <= max_length:
            out.segments.append(Segment(i, 0, list(ids), spans, np.ones(len(w), dtype=bool)))
            continue
        windows = _windows(counts, budget) if long_sentences == "window" else None
        if windows is None:
            out.skipped.append(i)
            continue
        best = np.full(len(w), -1)
        margin = np.full(len(w), -1)
        for k, (a, b) in enumerate(windows):
            idx = np.arange(a, b)
            m = np.minimum(idx - a, b - 1 - idx)
            better = m > margin[a:b]
            margin[a:b][better] = m[better]
            best[a:b][better] = k
        seg_enc = tokenizer([w[a:b] for a, b in windows], is_split_into_words=True, add_special_tokens=True, truncation=False)
        for k, (a, b) in enumerate(windows):
            out.segments.append(
                Segment(i, a, list(seg_enc["input_ids"][k]), _spans(seg_enc.word_ids(k), b - a), best[a:b] == k)
            )
    return out


def skipped_sentences(tokenizer, sentences: list[Sentence], max_length: int, n_special: int,
                      long_sentences: str) -> list[int]:
    """`encode_shard(...).skipped`, for less work: every sentence's subword count alone (no
    alignment), and `encode_shard` only for those that could be over `max_length` once a word
    that tokenizes to nothing is replaced (a sentence gains at most `fill` subwords per word)."""
    if not sentences:
        return []
    fill = tokenizer.unk_token or "-"
    plain = dict(is_split_into_words=True, add_special_tokens=False, truncation=False)
    base = len(tokenizer(["a"], **plain)["input_ids"])
    per_word = max(1, len(tokenizer([fill], **plain)["input_ids"]), len(tokenizer(["a", fill], **plain)["input_ids"]) - base)
    words = [list(s.words) for s in sentences]
    lengths = tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False, return_length=True,
                        return_attention_mask=False, return_token_type_ids=False)["length"]
    maybe = [i for i, (n, w) in enumerate(zip(lengths, words)) if n + per_word * len(w) > max_length]
    if not maybe:
        return []
    enc = encode_shard(tokenizer, [sentences[i] for i in maybe], max_length, n_special, long_sentences)
    return [maybe[j] for j in enc.skipped]
