"""Uncertainty and baselines for probe results.

- `wilson`: the Wilson score interval of an accuracy (k correct of n).
- `paired_bootstrap`: a percentile interval for the difference of two accuracies measured on
  the same test rows (selectivity = task accuracy - control accuracy).
- `sentence_bootstrap`: percentile intervals of test-set statistics (accuracy, balanced
  accuracy, selectivity) resampling whole test sentences: the tokens of one sentence are not
  independent, so an interval over tokens (Wilson) is too narrow. It covers test-sample noise
  only, not the variation across splits and re-fits (`probing.resplits` measures that).
- `lexical_baseline`: the accuracy of predicting a label from the word alone, a lookup
  learned on the training split (unseen words get the training split's majority label); the
  baseline reported is the stronger of the case-folded and the case-sensitive lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def lexical_baseline(words_train, y_train, words_test, classes: int, case_sensitive: bool = False) -> np.ndarray:
    """`[n_test]` predictions of a word-type lookup learned on the training rows: each type's
    most frequent training label (ties: the lower class id); unseen types get the majority
    training label. Types are case-folded (`probing.wordtypes`) unless `case_sensitive`."""
    y_train = np.asarray(y_train, dtype=np.int64)
    if case_sensitive:
        t_train = np.asarray([str(w) for w in np.asarray(words_train, dtype=object)], dtype=object)
        t_test = np.asarray([str(w) for w in np.asarray(words_test, dtype=object)], dtype=object)
    else:
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


def lexical_accuracy(words_train, y_train, words_test, y_test, classes: int) -> tuple[float, np.ndarray]:
    """The word lookup baseline: the stronger on the test rows of the case-folded and the
    case-sensitive lookups. Returns (accuracy, its `[n_test]` predictions)."""
    best = None
    for case_sensitive in (False, True):
        pred = lexical_baseline(words_train, y_train, words_test, classes, case_sensitive)
        acc = float(np.mean(pred == np.asarray(y_test))) if len(pred) else 0.0
        if best is None or acc > best[0]:
            best = (acc, pred)
    return best


def balanced_accuracy(y_true, y_pred, classes: int | None = None) -> float:
    """The mean over the classes present in `y_true` of each class's recall."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in present])) if len(present) else float("nan")


@dataclass
class BootstrapIntervals:
    """Percentile intervals (low, high) from one set of resampled test sentences."""
    accuracy: tuple[float, float]
    balanced_accuracy: tuple[float, float]
    control: tuple[float, float] | None = None
    selectivity: tuple[float, float] | None = None


def sentence_bootstrap(sentences, y_true, y_pred, y_control=None, c_pred=None, n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> BootstrapIntervals:
    """Intervals of test accuracy, balanced accuracy and (given the control task's labels and
    predictions) control accuracy and selectivity, resampling whole test sentences with
    replacement (a cluster bootstrap; each resample draws as many sentences as the test split
    has). Every statistic is computed on the same resamples, so selectivity is paired.
    All inputs `[n_test]`; `sentences` are the test rows' sentence ids."""
    sentences = np.asarray(sentences)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(y_true) or len(sentences) != len(y_true) or len(y_pred) != len(y_true):
        raise ValueError("sentence_bootstrap needs non-empty arrays of one length")
    _, group = np.unique(sentences, return_inverse=True)
    S = int(group.max()) + 1

    def per_sentence(v) -> np.ndarray:
        return np.bincount(group, weights=np.asarray(v, dtype=np.float64), minlength=S)

    hits = y_pred == y_true
    classes = np.unique(y_true)
    stats = {"rows": per_sentence(np.ones(len(y_true))), "hits": per_sentence(hits)}
    for c in classes:
        stats[f"n{c}"], stats[f"h{c}"] = per_sentence(y_true == c), per_sentence(hits & (y_true == c))
    paired = y_control is not None and c_pred is not None
    if paired:
        stats["chits"] = per_sentence(np.asarray(c_pred) == np.asarray(y_control))
    M = np.vstack(list(stats.values())).T  # [S, statistics]
    col = {k: i for i, k in enumerate(stats)}
    rng = np.random.default_rng(seed)
    sums = []
    block = max(1, 4_000_000 // S)  # resamples at a time: bounded memory at any number of sentences
    for start in range(0, n_boot, block):
        # a resample is decided by how often it draws each sentence: multinomial(S, uniform)
        W = rng.multinomial(S, np.full(S, 1.0 / S), size=min(block, n_boot - start))  # [b, S]
        sums.append(W @ M)
    T = np.vstack(sums)  # [n_boot, statistics]
    acc = T[:, col["hits"]] / T[:, col["rows"]]
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.vstack([np.where(T[:, col[f"n{c}"]] > 0, T[:, col[f"h{c}"]] / T[:, col[f"n{c}"]], np.nan)
                             for c in classes])
    bal = np.nanmean(recalls, axis=0)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]

    def band(v: np.ndarray) -> tuple[float, float]:
        lo, hi = np.nanquantile(v, q)
        return float(lo), float(hi)

    out = BootstrapIntervals(band(acc), band(bal))
    if paired:
        cacc = T[:, col["chits"]] / T[:, col["rows"]]
        out.control, out.selectivity = band(cacc), band(acc - cacc)
    return out
