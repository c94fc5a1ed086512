"""Word-to-subword alignment: turn sentences into model inputs ("segments").

A segment is one model input: subword ids with special tokens, and for each word its subword
span `[start, end)` in the input. A sentence is one segment, or with `long_sentences=window`
several overlapping ones; each word is then taken from the segment where it sits farthest from
an edge (`own` marks those words).

Two ways to feed a sentence (`extraction.input`):

- `text` (the default): the model reads the sentence as running text (`Sentence.running_text`:
  the corpus's own text, else the words joined by spaces), tokenized by the tokenizer as it
  tokenizes any text, and words take subwords by character offsets. The rule: a subword's
  characters, trimmed of whitespace, belong to every word they overlap; a subword of whitespace
  alone (or of no width), at position p (its end; its start when it has no width), belongs to
  the word that contains p, else to the next word that starts after p (a space marker goes with
  the word it marks). A word's subwords run from the first to the last subword that belongs to
  it. A subword that belongs to two words (`don't` read as `don` + `'t` while the words are `do`
  + `n't`) counts for both, and both words are flagged `shared`.
- `words`: each word is a pre-split unit (`is_split_into_words`), as NeuroX-style extraction
  feeds a model; byte-level BPE is loaded with a space before every word. The ids must equal the
  tokenizer's own encoding of the words joined by spaces, else the run stops (a tokenizer such as
  Gemma's, Llama 3's or Qwen2's reads pre-split words as other text).

A word that tokenizes to nothing (a lone control or zero-width character, say) is replaced by
the tokenizer's unknown token (or `-` where there is none), so no word is ever dropped; the
replacement is recorded per word.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from concepts.core.errors import UserError
from concepts.corpus import Sentence

log = logging.getLogger(__name__)

INPUTS = ("text", "words")


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
    shared: dict[int, np.ndarray] = field(default_factory=dict)  # sentence -> [n_words] bool: a subword shared with another word
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
    tokenizer, sentences: list[Sentence], max_length: int, n_special: int, long_sentences: str,
    input: str = "text", family: str = "",
) -> EncodedShard:
    """Tokenize a shard's sentences into segments (see module docstring). `n_special`: special
    tokens around one input (`words` input; the `text` input counts them per sentence); `family`:
    the model type, for messages."""
    if input == "text":
        return _encode_text(tokenizer, sentences, max_length, long_sentences)
    if input == "words":
        return _encode_words(tokenizer, sentences, max_length, n_special, long_sentences, family)
    raise UserError(f"extraction.input={input!r}: use one of {', '.join(INPUTS)}")


# ---- text input: offsets


def _char_tables(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For trimming spans of `text` to their non-space characters: `(count, next_ns, prev_end)`,
    each `[len(text) + 1]`: non-space characters before position p; the first non-space
    position >= p (or len); the end of the last non-space character at or before p (or 0)."""
    n = len(text)
    ns = np.fromiter((not c.isspace() for c in text), dtype=bool, count=n)
    count = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ns, out=count[1:])
    idx = np.flatnonzero(ns)
    p = np.arange(n + 1)
    k = np.searchsorted(idx, p, side="left")
    next_ns = np.where(k < len(idx), idx[np.minimum(k, len(idx) - 1)] if len(idx) else n, n)
    k2 = np.searchsorted(idx, p, side="left") - 1  # last non-space index < p
    prev_end = np.where(k2 >= 0, idx[np.maximum(k2, 0)] + 1 if len(idx) else 0, 0)
    return count, next_ns, prev_end


def align_offsets(text: str, words: list[tuple[int, int]], offsets, special) -> tuple[np.ndarray, np.ndarray]:
    """Each word's subword span by character offsets (module docstring's rule).

    Args:
        text: the running text.
        words: `[n_words]` `(start, end)` of each word in `text`, in order.
        offsets: `[T, 2]` each subword's character span (the tokenizer's offsets mapping).
        special: `[T]` bool, subwords added around the text (never a word's).

    Returns:
        `(spans [n_words, 2], shared [n_words] bool)`; a word no subword belongs to has `-1` span.
    """
    n = len(words)
    spans = np.full((n, 2), -1, dtype=np.int64)
    shared = np.zeros(n, dtype=bool)
    if n == 0:
        return spans, shared
    w = np.asarray(words, dtype=np.int64).reshape(n, 2)
    om = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    tok = np.flatnonzero(~np.asarray(special, dtype=bool))
    if not len(tok):
        return spans, shared
    a, b = om[tok, 0], om[tok, 1]
    count, next_ns, prev_end = _char_tables(text)
    a, b = np.clip(a, 0, len(text)), np.clip(b, 0, len(text))
    solid = count[b] - count[np.minimum(a, b)] > 0
    ta, tb = np.where(solid, next_ns[a], 0), np.where(solid, prev_end[b], 0)
    starts, ends = w[:, 0], w[:, 1]
    # a solid subword: the words it overlaps (start < tb and end > ta), a contiguous run
    lo = np.searchsorted(ends, ta, side="right")
    hi = np.searchsorted(starts, tb, side="left")
    # a blank one at p: the first word whose end is after p (contains p, or starts after it)
    p = np.where(b > a, b, a)
    blank_lo = np.searchsorted(ends, p, side="right")
    lo = np.where(solid, lo, blank_lo)
    hi = np.where(solid, hi, np.minimum(blank_lo + 1, n))
    hi = np.maximum(hi, lo)
    k = hi - lo
    rep_tok = np.repeat(tok, k)
    rep_word = np.repeat(lo, k) + (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k))
    if not len(rep_word):
        return spans, shared
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, -1)
    np.minimum.at(first, rep_word, rep_tok)
    np.maximum.at(last, rep_word, rep_tok)
    has = last >= 0
    spans[has, 0], spans[has, 1] = first[has], last[has] + 1
    shared[rep_word[np.repeat(k, k) > 1]] = True
    return spans, shared


def _edges(special: list[int], offsets) -> tuple[int, int]:
    """Special tokens added before and after the text: `(leading, trailing)` counts."""
    added = [bool(s) and a == b for s, (a, b) in zip(special, offsets)]
    lead = 0
    while lead < len(added) and added[lead]:
        lead += 1
    trail = 0
    while trail < len(added) - lead and added[len(added) - 1 - trail]:
        trail += 1
    return lead, trail


def _encode_texts(tokenizer, texts: list[str]):
    return tokenizer(texts, add_special_tokens=True, truncation=False, return_offsets_mapping=True,
                     return_special_tokens_mask=True, return_attention_mask=False, return_token_type_ids=False)


def _aligned(enc, k: int, text: str, offsets) -> tuple[list[int], np.ndarray, np.ndarray, tuple[int, int]]:
    ids, om, sm = enc["input_ids"][k], enc["offset_mapping"][k], enc["special_tokens_mask"][k]
    lead, trail = _edges(sm, om)
    special = np.zeros(len(ids), dtype=bool)
    special[:lead] = True
    special[len(ids) - trail:] = True
    spans, shared = align_offsets(text, offsets, om, special)
    return list(ids), spans, shared, (lead, trail)


def _fill_empty(text: str, offsets: list[tuple[int, int]], empty: np.ndarray, fill: str):
    """`text` with the characters of each `empty` word replaced by `fill`, and the new offsets."""
    out, new, pos, shift = [], [], 0, 0
    done: dict[tuple[int, int], tuple[int, int]] = {}
    for (a, b), e in zip(offsets, empty):
        if (a, b) in done:  # words sharing one span (a multi-word token)
            new.append(done[(a, b)])
            continue
        out.append(text[pos:a])
        start = a + shift
        piece = fill if e else text[a:b]
        out.append(piece)
        shift += len(piece) - (b - a)
        pos = b
        done[(a, b)] = (start, start + len(piece))
        new.append(done[(a, b)])
    out.append(text[pos:])
    return "".join(out), new


def _encode_text(tokenizer, sentences: list[Sentence], max_length: int, long_sentences: str) -> EncodedShard:
    out = EncodedShard()
    running = [s.running_text() for s in sentences]
    enc = _encode_texts(tokenizer, [t for t, _ in running])
    aligned = [_aligned(enc, i, t, o) for i, (t, o) in enumerate(running)]
    redo = []
    fill = tokenizer.unk_token or "-"
    for i, (_, spans, _, _) in enumerate(aligned):
        empty = spans[:, 0] < 0
        out.replaced[i] = empty
        if empty.any():
            running[i] = _fill_empty(*running[i], empty, fill)
            redo.append(i)
    if redo:
        log.debug("%d sentences had words that tokenize to nothing; replaced by the unknown token", len(redo))
        enc2 = _encode_texts(tokenizer, [running[i][0] for i in redo])
        for k, i in enumerate(redo):
            aligned[i] = _aligned(enc2, k, *running[i])
    for i, (ids, spans, shared, (lead, trail)) in enumerate(aligned):
        if (spans[:, 0] < 0).any():
            raise RuntimeError(f"sentence {sentences[i].source}: a word still has no subword after replacement")
        counts = spans[:, 1] - spans[:, 0]
        out.n_subwords[i] = counts
        out.shared[i] = shared
        n = len(counts)
        if len(ids) <= max_length:
            out.segments.append(Segment(i, 0, ids, spans, np.ones(n, dtype=bool)))
            continue
        budget = max_length - lead - trail
        windows = _windows(counts, budget) if long_sentences == "window" and budget > 0 else None
        if windows is not None and any(spans[b - 1, 1] - spans[a, 0] > budget for a, b in windows):
            windows = None  # subwords of no word between words made a window too long (rare): skipped
        if windows is None:
            out.skipped.append(i)
            continue
        head, tail = ids[:lead], ids[len(ids) - trail:]
        for (a, b), own in zip(windows, _owners(windows, n)):
            lo, hi = spans[a, 0], spans[b - 1, 1]
            seg_ids = head + ids[lo:hi] + tail
            out.segments.append(Segment(i, a, seg_ids, spans[a:b] - lo + lead, own[a:b]))
    return out


def _owners(windows: list[tuple[int, int]], n: int) -> list[np.ndarray]:
    """For each window, `[n]` bool: the words taken from it (farthest from an edge; the earliest
    window on ties)."""
    best = np.full(n, -1)
    margin = np.full(n, -1)
    for k, (a, b) in enumerate(windows):
        idx = np.arange(a, b)
        m = np.minimum(idx - a, b - 1 - idx)
        better = m > margin[a:b]
        margin[a:b][better] = m[better]
        best[a:b][better] = k
    return [best == k for k in range(len(windows))]


# ---- words input: pre-split words


def _check_words(tokenizer, words: list[list[str]], enc, sentences: list[Sentence], rows: list[int], family: str) -> None:
    """The pre-split ids must be the tokenizer's own encoding of the words joined by spaces."""
    text = tokenizer([" ".join(w) for w in words], add_special_tokens=True, truncation=False,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    for k, (got, want) in enumerate(zip(enc["input_ids"], text)):
        if list(got) != list(want):
            at = next((j for j, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
            lo, hi = max(0, at - 2), at + 4
            raise UserError(
                f"model family {family or 'unknown'}: with extraction.input=words the model would read other text "
                f"than the words: sentence {sentences[rows[k]].source or rows[k]} ({' '.join(words[k])[:80]!r}) "
                f"pre-split gives {tokenizer.convert_ids_to_tokens(list(got[lo:hi]))} where the tokenizer reads the "
                f"text as {tokenizer.convert_ids_to_tokens(list(want[lo:hi]))}. This tokenizer "
                "does not take pre-split words; use extraction.input=text (the default)."
            )


def _encode_words(tokenizer, sentences: list[Sentence], max_length: int, n_special: int, long_sentences: str,
                  family: str) -> EncodedShard:
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
    clean = [i for i in range(len(words)) if i not in set(redo)]
    _check_words(tokenizer, [words[i] for i in clean], {"input_ids": [enc["input_ids"][i] for i in clean]},
                 sentences, clean, family)
    if redo:
        log.debug("%d sentences had words that tokenize to nothing; replaced by the unknown token", len(redo))
        enc2 = tokenizer([words[i] for i in redo], is_split_into_words=True, add_special_tokens=True, truncation=False)
        _check_words(tokenizer, [words[i] for i in redo], enc2, sentences, redo, family)
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
        out.shared[i] = np.zeros(len(w), dtype=bool)
        if len(ids) <= max_length:
            out.segments.append(Segment(i, 0, list(ids), spans, np.ones(len(w), dtype=bool)))
            continue
        windows = _windows(counts, budget) if long_sentences == "window" else None
        if windows is None:
            out.skipped.append(i)
            continue
        seg_enc = tokenizer([w[a:b] for a, b in windows], is_split_into_words=True, add_special_tokens=True, truncation=False)
        for k, ((a, b), own) in enumerate(zip(windows, _owners(windows, len(w)))):
            out.segments.append(Segment(i, a, list(seg_enc["input_ids"][k]), _spans(seg_enc.word_ids(k), b - a), own[a:b]))
    return out


def skipped_sentences(tokenizer, sentences: list[Sentence], max_length: int, n_special: int,
                      long_sentences: str, input: str = "text", family: str = "") -> list[int]:
    """`encode_shard(...).skipped`, for less work: every sentence's subword count alone (no
    alignment), and `encode_shard` only for those that could be over `max_length` once a word
    that tokenizes to nothing is replaced (a sentence gains at most `fill` subwords per word)."""
    if not sentences:
        return []
    fill = tokenizer.unk_token or "-"
    plain = dict(is_split_into_words=True, add_special_tokens=False, truncation=False)
    base = len(tokenizer(["a"], **plain)["input_ids"])
    per_word = max(1, len(tokenizer([fill], **plain)["input_ids"]), len(tokenizer(["a", fill], **plain)["input_ids"]) - base,
                   len(tokenizer("a " + fill, add_special_tokens=False)["input_ids"]) - 1)
    words = [list(s.words) for s in sentences]
    counted = dict(add_special_tokens=True, truncation=False, return_length=True, return_attention_mask=False,
                   return_token_type_ids=False)
    if input == "text":
        lengths = tokenizer([s.running_text()[0] for s in sentences], **counted)["length"]
    else:
        lengths = tokenizer(words, is_split_into_words=True, **counted)["length"]
    maybe = [i for i, (n, w) in enumerate(zip(lengths, words)) if n + per_word * len(w) > max_length]
    if not maybe:
        return []
    enc = encode_shard(tokenizer, [sentences[i] for i in maybe], max_length, n_special, long_sentences, input, family)
    return [maybe[j] for j in enc.skipped]
