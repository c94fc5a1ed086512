"""Uncertainty and baselines for probe results.

- `wilson`: the Wilson score interval of an accuracy (k correct of n).
- `paired_bootstrap`: a percentile interval for the difference of two accuracies measured on
  the same test rows (selectivity = task accuracy - control accuracy).
- `lexical_baseline`: the accuracy of predicting a label from the word type alone, a lookup
  learned on the training split (unseen types get the training split's majority label).
"""

from __future__ import annotations

import math

import numpy as np

from probing.wordtypes import word_types


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% (by default) Wilson score interval of the proportion `correct / n`."""
    if n <= 0:
        raise ValueError("an interval needs at least one trial")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(hits_a: np.ndarray, hits_b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(hits_a) - mean(hits_b), resampling the shared test rows.
    `hits_a`, `hits_b`: `[n]` 0/1 (correct or not) on the same rows."""
    a = np.asarray(hits_a, dtype=np.float64)
    b = np.asarray(hits_b, dtype=np.float64)
    if len(a) != len(b) or not len(a):
        raise ValueError("paired_bootstrap needs two non-empty arrays of one length")
    rng = np.random.default_rng(seed)
    # A resample of the n rows is decided, for the mean, by how many rows of each value of a - b it
    # draws: multinomial(n, the values' shares). So draw those counts (3 values for 0/1 hits) rather
    # than n_boot x n row indices: the same distribution, without n_boot x n memory and time.
    values, counts = np.unique(a - b, return_counts=True)
    drawn = rng.multinomial(len(a), counts / len(a), size=n_boot)  # [n_boot, n_values]
    means = drawn @ values / len(a)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def lexical_baseline(words_train, y_train, words_test, classes: int) -> np.ndarray:
    """`[n_test]` predictions of a word-type lookup learned on the training rows: each type's
    most frequent training label (ties: the lower class id); unseen types get the majority
    training label."""
    y_train = np.asarray(y_train, dtype=np.int64)
    t_train, t_test = word_types(words_train), word_types(words_test)
    majority = int(np.bincount(y_train, minlength=classes).argmax()) if len(y_train) else 0
    types, inverse = np.unique(t_train, return_inverse=True)
    counts = np.zeros((len(types), classes), dtype=np.int64)
    np.add.at(counts, (inverse, y_train), 1)
    lookup = dict(zip(types.tolist(), counts.argmax(1).tolist()))
    return np.fromiter((lookup.get(t, majority) for t in t_test), dtype=np.int64, count=len(t_test))


def majority_baseline(y_train, y_test, classes: int) -> float:
    """Test accuracy of always predicting the training split's most frequent label."""
    majority = int(np.bincount(np.asarray(y_train, dtype=np.int64), minlength=classes).argmax())
    return float(np.mean(np.asarray(y_test) == majority))
