"""An independent reference for per-word vectors, written from the documented rule alone.

1. The running text is tokenized alone (`AutoTokenizer.from_pretrained(folder)`, special tokens
   added, offsets and special-tokens mask returned).
2. A non-special token with offsets (a, b), trimmed of whitespace at both ends to (a', b'),
   belongs to every word whose span overlaps it (start < b' and end > a'). A token that covers
   only whitespace (p = b) or has zero width (p = a) belongs to the word containing p, else to
   the first word starting at or after p, else to none.
3. A word's subwords run from the first to the last token that belongs to it; `first`, `last`
   and `mean` (over the whole run) aggregate them. A token belonging to two words counts for
   both ("shared" words).
4. The model (the encoder of an encoder-decoder) runs on the sentence alone (batch of one, no
   padding, attention mask of ones, hidden states of every layer, float32, eval, no grad).
5. Sentences longer than `max_length` are cut into windows of whole words (`plan_windows`) and
   each word takes its vector from the window where it lies deepest (`pick_window`).

No `word_ids()`: the alignment is computed from offsets here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

AGGREGATIONS = ("first", "last", "mean")


def running_text(words: list[str], space_after: list[bool] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """`words` joined by a single space (none after word i where `space_after[i]` is False):
    `(text, [(start, end) of each word])`."""
    parts, spans, pos = [], [], 0
    for i, w in enumerate(words):
        spans.append((pos, pos + len(w)))
        parts.append(w)
        pos += len(w)
        if i < len(words) - 1 and (space_after is None or space_after[i]):
            parts.append(" ")
            pos += 1
    return "".join(parts), spans


# ---------------------------------------------------------------------------------------------
# loading


def _kw_key(tokenizer_kwargs: dict | None) -> tuple:
    return tuple(sorted((tokenizer_kwargs or {}).items()))


@lru_cache(maxsize=64)
def _tokenizer(folder: str, kw: tuple = ()):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, **dict(kw))


@lru_cache(maxsize=8)
def _model(folder: str):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
        model.eval()
    return model


def tokenizer(folder, tokenizer_kwargs: dict | None = None):
    """The tokenizer the reference uses (cached)."""
    return _tokenizer(str(folder), _kw_key(tokenizer_kwargs))


# ---------------------------------------------------------------------------------------------
# alignment


@dataclass
class Alignment:
    """The tokenization of one text and which tokens belong to which word."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    special: list[bool]
    type_ids: list[int] | None
    belongs: list[list[int]]  # per word: the token indices that belong to it, in order
    runs: list[tuple[int, int] | None]  # per word: (first, last) token index, None: no token
    shared: list[bool] = field(default_factory=list)

    @property
    def counts(self) -> list[int]:
        return [0 if r is None else r[1] - r[0] + 1 for r in self.runs]

    @property
    def n_lead(self) -> int:
        n = 0
        while n < len(self.special) and self.special[n]:
            n += 1
        return n

    @property
    def n_trail(self) -> int:
        if all(self.special):
            return 0
        n = 0
        while n < len(self.special) and self.special[len(self.special) - 1 - n]:
            n += 1
        return n


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def owners(text: str, spans: list[tuple[int, int]], a: int, b: int) -> list[int]:
    """The words a token with character offsets (a, b) belongs to (rule 2)."""
    ta, tb = _trim(text, a, b)
    if ta < tb:
        return [w for w, (s, e) in enumerate(spans) if s < tb and e > ta]
    p = b if b > a else a
    inside = [w for w, (s, e) in enumerate(spans) if s <= p < e]
    if inside:
        return inside
    after = [w for w, (s, _) in enumerate(spans) if s >= p]
    return [min(after, key=lambda w: (spans[w][0], w))] if after else []


def align_encoding(text: str, spans: list[tuple[int, int]], ids, tokens, offsets, special, type_ids=None) -> Alignment:
    belongs: list[list[int]] = [[] for _ in spans]
    owner_of: list[list[int]] = []
    for k, ((a, b), sp) in enumerate(zip(offsets, special)):
        ws = [] if sp else owners(text, spans, int(a), int(b))
        owner_of.append(ws)
        for w in ws:
            belongs[w].append(k)
    runs = [(ks[0], ks[-1]) if ks else None for ks in belongs]
    shared = [any(len(owner_of[k]) > 1 for k in ks) for ks in belongs]
    return Alignment(list(ids), list(tokens), [tuple(map(int, o)) for o in offsets], [bool(s) for s in special],
                     None if type_ids is None else list(type_ids), belongs, runs, shared)


def align(folder, text: str, spans: list[tuple[int, int]], tokenizer_kwargs: dict | None = None) -> Alignment:
    """Tokenize `text` with the folder's tokenizer and align its tokens to the words' `spans`."""
    return _align(str(folder), text, tuple(map(tuple, spans)), _kw_key(tokenizer_kwargs))


@lru_cache(maxsize=4096)
def _align(folder: str, text: str, spans: tuple, kw: tuple) -> Alignment:
    tok = _tokenizer(folder, kw)
    enc = tok(text, add_special_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    return align_encoding(text, list(spans), ids, tok.convert_ids_to_tokens(ids), enc["offset_mapping"],
                          enc["special_tokens_mask"], enc.get("token_type_ids"))


# ---------------------------------------------------------------------------------------------
# windows


def plan_windows(counts: list[int], budget: int) -> list[tuple[int, int]]:
    """Windows over whole words, as `(first word, last word)` (inclusive), for words of
    `counts` subwords and `budget` subwords per window (rule 5)."""
    n = len(counts)
    windows: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end, total = start, 0
        while end < n and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        if end == start:  # a word longer than the budget still gets a window of its own
            total, end = counts[start], start + 1
        windows.append((start, end - 1))
        if end >= n:
            break
        nxt, run = start, 0
        while nxt < end and run + counts[nxt] <= total / 2:
            run += counts[nxt]
            nxt += 1
        start = max(nxt, start + 1)
    return windows


def pick_window(windows: list[tuple[int, int]], i: int) -> int:
    """The window word `i` takes its vector from: the one where it lies farthest from the
    nearer edge (in words), the earliest on ties."""
    best, best_depth = -1, -1
    for w, (a, b) in enumerate(windows):
        if a <= i <= b:
            depth = min(i - a, b - i)
            if depth > best_depth:
                best, best_depth = w, depth
    return best


# ---------------------------------------------------------------------------------------------
# vectors


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _hidden(folder: str, ids: list[int], type_ids: list[int] | None) -> np.ndarray:
    """`[n_layers, len(ids), hidden]` float64 hidden states of one unpadded input."""
    import torch

    model = _model(folder)
    inputs = {"input_ids": torch.tensor([ids], dtype=torch.long),
              "attention_mask": torch.ones((1, len(ids)), dtype=torch.long)}
    if type_ids is not None and _accepts(model, "token_type_ids"):
        inputs["token_type_ids"] = torch.tensor([type_ids], dtype=torch.long)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, return_dict=True)
    return np.stack([h[0].float().numpy() for h in out.hidden_states]).astype(np.float64)


def _aggregate(hidden: np.ndarray, positions: list[int], how: str) -> np.ndarray:
    if how == "first":
        return hidden[:, positions[0]]
    if how == "last":
        return hidden[:, positions[-1]]
    if how == "mean":
        return hidden[:, positions].mean(axis=1)
    raise ValueError(f"aggregation {how!r}: use first, last or mean")


def windows_of(al: Alignment, max_length: int | None) -> list[tuple[int, int]] | None:
    """The word windows of a sentence (None: it fits and is run whole)."""
    if max_length is None or len(al.ids) <= max_length:
        return None
    return plan_windows(al.counts, max_length - (al.n_lead + al.n_trail))


def window_input(al: Alignment, first_word: int, last_word: int) -> tuple[list[int], list[int] | None, int]:
    """A window's input ids, its token type ids, and the full encoding's index of its first
    content token (content position k sits at `n_lead + k - that index` in the window)."""
    runs = [al.runs[w] for w in range(first_word, last_word + 1) if al.runs[w] is not None]
    lo, hi = min(r[0] for r in runs), max(r[1] for r in runs)
    lead, trail = al.n_lead, al.n_trail
    n = len(al.ids)
    idx = list(range(lead)) + list(range(lo, hi + 1)) + list(range(n - trail, n))
    ids = [al.ids[k] for k in idx]
    types = None if al.type_ids is None else [al.type_ids[k] for k in idx]
    return ids, types, lo


def reference_all(folder, text: str, spans: list[tuple[int, int]], max_length: int | None = None,
                  tokenizer_kwargs: dict | None = None) -> dict[str, np.ndarray]:
    """{aggregation: `[n_layers, n_words, hidden]` float64} for one sentence. A word with no
    subword at all gets NaN."""
    return _reference_all(str(folder), text, tuple(map(tuple, spans)), max_length, _kw_key(tokenizer_kwargs))


@lru_cache(maxsize=2048)
def _reference_all(folder: str, text: str, spans: tuple, max_length: int | None, kw: tuple) -> dict[str, np.ndarray]:
    al = _align(folder, text, spans, kw)
    windows = windows_of(al, max_length)
    n_words = len(spans)
    if windows is None:
        hidden = _hidden(folder, al.ids, al.type_ids)
        pieces = [(hidden, 0)]  # (hidden states, shift from full-encoding index to input position)
        where = [0] * n_words
    else:
        pieces = []
        for a, b in windows:
            ids, types, lo = window_input(al, a, b)
            pieces.append((_hidden(folder, ids, types), al.n_lead - lo))
        where = [pick_window(windows, i) for i in range(n_words)]
    n_layers, hidden_size = pieces[0][0].shape[0], pieces[0][0].shape[2]
    out = {how: np.full((n_layers, n_words, hidden_size), np.nan) for how in AGGREGATIONS}
    for i, run in enumerate(al.runs):
        if run is None:
            continue
        hidden, shift = pieces[where[i]]
        positions = [k + shift for k in range(run[0], run[1] + 1)]
        for how in AGGREGATIONS:
            out[how][:, i] = _aggregate(hidden, positions, how)
    return out


def reference_vectors(folder, text: str, spans: list[tuple[int, int]], aggregation: str,
                      max_length: int | None = None, tokenizer_kwargs: dict | None = None) -> np.ndarray:
    """`[n_layers, n_words, hidden]` float64 vectors of the words at `spans` of `text` by the
    documented rule. `tokenizer_kwargs`: extra arguments to `AutoTokenizer.from_pretrained`
    (none by default; e.g. `add_prefix_space=True` to mirror a pre-split-words reload)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r}: use first, last or mean")
    return reference_all(folder, text, spans, max_length, tokenizer_kwargs)[aggregation]
