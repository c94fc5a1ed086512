"""Token sampling before clustering (Dalvi et al. 2022; Mousi et al. 2023): keep word types
seen at least `min_count` times, and at most `max_per_type` occurrences of each (a seeded
random choice). Long sentences were already dropped when the corpus was read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class SampleStats:
    tokens_in: int
    types_in: int
    types_kept: int
    types_dropped_rare: int
    tokens_kept: int
    tokens_dropped_rare: int
    tokens_dropped_cap: int


def sample_tokens(words: Sequence[str], min_count: int = 10, max_per_type: int = 10, seed: int = 0,
                  lowercase: bool = False) -> tuple[np.ndarray, SampleStats]:
    """Choose token rows to cluster.

    Args:
        words: `[n]` the word of every token row.
    Returns:
        sorted row indices `[m]`, and counts of what was kept and dropped.
    """
    if min_count < 1 or max_per_type < 1:
        raise ValueError("min_count and max_per_type must be at least 1")
    keys = np.array([w.lower() for w in words] if lowercase else list(words), dtype=object)
    types, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return _sample(inverse.reshape(-1), counts, len(types), min_count, max_per_type, seed)


class TypeCounter:
    """Word types of a stream of words, for `sample_tokens` without a list of the words: a
    vocabulary and one int32 per word (`add` each sentence's words in store order)."""

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase
        self.vocab: dict[str, int] = {}
        self._ids: list[np.ndarray] = []

    def add(self, words: Sequence[str]) -> None:
        vocab = self.vocab
        keys = [w.lower() for w in words] if self.lowercase else words
        self._ids.append(np.fromiter((vocab.setdefault(w, len(vocab)) for w in keys), dtype=np.int32, count=len(keys)))

    def sample(self, min_count: int = 10, max_per_type: int = 10, seed: int = 0) -> tuple[np.ndarray, SampleStats]:
        """The same rows and counts as `sample_tokens` over the words added, in order."""
        if min_count < 1 or max_per_type < 1:
            raise ValueError("min_count and max_per_type must be at least 1")
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, dtype=np.int32)
        names = list(self.vocab)
        rank = np.empty(len(names), dtype=np.int64)  # first-seen id -> position in sorted order (as np.unique)
        rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        inverse = rank[ids]
        counts = np.bincount(inverse, minlength=len(names))
        return _sample(inverse, counts, len(names), min_count, max_per_type, seed)


def _sample(inverse: np.ndarray, counts: np.ndarray, n_types: int, min_count: int, max_per_type: int,
            seed: int) -> tuple[np.ndarray, SampleStats]:
    """The seeded draw: `inverse` `[n]` each row's type (types numbered in sorted order), `counts` `[T]`."""
    rng = np.random.default_rng(seed)
    order = np.argsort(inverse, kind="stable")  # rows grouped by type
    starts = np.concatenate([[0], np.cumsum(counts)])
    kept = []
    for t in np.flatnonzero(counts >= min_count):
        rows = order[starts[t] : starts[t + 1]]
        if len(rows) > max_per_type:
            rows = rng.choice(rows, size=max_per_type, replace=False)
        kept.append(rows)
    rows = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    rare = counts < min_count
    stats = SampleStats(
        tokens_in=len(inverse), types_in=n_types, types_kept=int((~rare).sum()),
        types_dropped_rare=int(rare.sum()), tokens_kept=len(rows),
        tokens_dropped_rare=int(counts[rare].sum()),
        tokens_dropped_cap=int(np.maximum(counts[~rare] - max_per_type, 0).sum()),
    )
    return rows.astype(np.int64), stats
