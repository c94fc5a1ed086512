"""The one word-type rule of probing: a word's type is its case-folded form (`str.casefold`),
so "The", "the" and "THE" are one type.

Every place that groups tokens by type uses it: control tasks (one random label per type),
the type split (test types unseen in training) and the lexical baseline (a type -> label
lookup learned on the training split)."""

from __future__ import annotations

import numpy as np


def word_types(words) -> np.ndarray:
    """`[n]` word types (case-folded strings) of `[n]` words."""
    return np.asarray([str(w).casefold() for w in np.asarray(words, dtype=object)], dtype=object)
