"""Evaluating a ranking: probes retrained on the top-k, random-k and bottom-k neurons; the
accuracy drop when the top-k (or random-k) neurons of a trained probe are ablated; Jaccard
overlap of top-k sets; and the paper's super/sub-concept overlap (Table 11)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from concepts.errors import UserError
from neurons.rankers import standardized
from neurons.ranking import Ranking
from probing.data import ArrayDataModule, check_finite
from probing.fit import FitOptions, FittedProbe, fit_probe


def resolve_ks(ks: list, dim: int) -> list[int]:
    """k given as counts (17) or percentages ("5%") -> counts in [1, dim]."""
    out = []
    for k in ks:
        if isinstance(k, str) and k.endswith("%"):
            v = max(1, int(round(float(k[:-1]) / 100 * dim)))
        else:
            v = int(k)
        if not 0 < v <= dim:
            raise UserError(f"k={k} is outside 1..{dim} (the neurons ranked); lower neurons.ks")
        out.append(v)
    return sorted(set(out))


@dataclass
class Data:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: int


def _acc(fit: FittedProbe, X: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.mean(fit.predict(X, mask) == y))


def retrain_curve(ranking: Ranking, data: Data, ks: list[int], opt: FitOptions, seed: int = 0) -> list[dict]:
    """Test accuracy of probes retrained on the top-k, random-k and bottom-k neurons."""
    rng = np.random.default_rng(seed)
    order = ranking.order()
    rows = []
    for k in ks:
        for which, idx in (("top", order[:k]), ("random", rng.choice(ranking.dim, k, replace=False)),
                           ("bottom", order[-k:])):
            idx = np.sort(idx)
            fit = fit_probe(ArrayDataModule(data.X_train[:, idx], data.y_train), data.classes, opt)
            rows.append({"method": ranking.method, "k": k, "neurons": which, "accuracy": _acc(fit, data.X_test[:, idx], data.y_test)})
    return rows


def ablation(ranking: Ranking, fit: FittedProbe, data: Data, ks: list[int], seed: int = 0,
             value: str = "mean") -> list[dict]:
    """Accuracy of a probe trained on all neurons when the top-k or random-k neurons are set to
    their training mean (`value="mean"`, zero after z-scoring) or to zero (`"zero"`), and the
    drop from the full accuracy."""
    if value not in ("mean", "zero"):
        raise UserError(f"neurons.ablate={value!r}: use mean or zero")
    rng = np.random.default_rng(seed)
    full = _acc(fit, data.X_test, data.y_test)
    rows = []
    for k in ks:
        for which, idx in (("top", ranking.top(k)), ("random", rng.choice(ranking.dim, k, replace=False))):
            mask = np.ones(ranking.dim, np.float32)
            mask[idx] = 0
            if value == "mean":
                acc = _acc(fit, data.X_test, data.y_test, mask)
            else:
                acc = _acc(fit, data.X_test * mask, data.y_test)
            rows.append({"method": ranking.method, "k": k, "ablated": which, "value": value, "accuracy": acc,
                         "full": full, "drop": full - acc})
    return rows


def jaccard(a, b) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def overlap_table(rankings: dict[str, Ranking], k: int) -> list[dict]:
    """Jaccard overlap of the overall top-k sets of every pair of methods."""
    names = sorted(rankings)
    return [{"a": a, "b": b, "k": k, "jaccard": jaccard(rankings[a].top(k), rankings[b].top(k))}
            for i, a in enumerate(names) for b in names[i + 1:]]


def super_sub_overlap(ranker, X: np.ndarray, groups: dict[str, dict[str, np.ndarray]], top: int = 10) -> list[dict]:
    """The paper's neuron analysis: for each super concept (name -> {sub concept: row mask
    `[n]`}), rank neurons for the super concept (the union of its sub concepts) against all
    other rows, and for each sub concept against all other rows; report the overlap of the
    top-`top` neurons (count and share) between the super concept and each sub concept.

    Every ranking here reads the same rows, so a ranker that z-scores its input (`standardize`)
    has it done once, not once per concept: at the paper's size (230k x 768) that was ~1.7 s a
    ranking, 54 rankings a layer."""
    check_finite(np.asarray(X), "the activations to rank")  # once, for all the rankings below
    if getattr(ranker, "standardize", False):
        X = standardized(X)
        ranker = copy.copy(ranker)
        ranker.standardize = False
    rows = []
    for sup, subs in groups.items():
        union = np.zeros(len(X), dtype=bool)
        for m in subs.values():
            union |= m
        if union.all() or not union.any():
            continue
        sup_top = ranker.rank(X, union.astype(int), ["rest", sup], finite_checked=True).top(top, 1)
        for sub, m in subs.items():
            if m.all() or not m.any():
                continue
            sub_top = ranker.rank(X, m.astype(int), ["rest", sub], finite_checked=True).top(top, 1)
            shared = len(set(sup_top.tolist()) & set(sub_top.tolist()))
            rows.append({"super": sup, "sub": sub, "sub_tokens": int(m.sum()), "shared": shared, "share": shared / top})
    return rows
