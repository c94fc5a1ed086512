"""Neuron rankers, one interface: `ranker.rank(X [n, d], y [n], classes) -> Ranking`.

Every ranker takes `standardize`: rank z-scored activations (each neuron's mean and sd over
the rows ranked) instead of raw ones. It matters for the scale-sensitive methods (the two
Probeless ones, `scale_sensitive = True`): on raw activations a wide "outlier" neuron with no
class information outranks informative ones, and BERT-family models have such dimensions.
The others are invariant to a neuron's scale (probe_weights z-scores its inputs itself).

- `probeless` (Antverg & Belinkov 2022, as NeuroX's `interpretation.probeless`): with q(c)
  the mean of a neuron on class c, the salience for class c is the sum over the other classes
  c' of |q(c) - q(c')|, and overall the sum over class pairs (classes absent from the rows
  ranked are left out).
- `probeless_ovr`, a one-vs-rest variant: |mean on class c - mean on the rest|; overall the
  sum over classes.
- `probe_weights` (Dalvi et al. 2019): the absolute weights of an elastic-net linear probe
  (the probing module's probe, trained on z-scored inputs); per class |w_c|; overall the sum
  over classes of |w_c| / max|w_c|.
- `iou` (Mu & Andreas 2020): a neuron's mask is its top activations (the top `quantile`, or by
  default as many as the class has tokens), IoU with the class mask; with `both_tails` the
  bottom tail counts too (the larger IoU wins); overall the max over classes.
- `gaussian` (after Torroba Hennigen et al. 2020, with a diagonal covariance): greedy forward
  selection of `select` neurons that most raise the training log-likelihood of a Gaussian
  classifier; the rest follow by their single-neuron log-likelihood gain. Per class: the
  class-conditional separation (|mean_c - mean| / sd) of each neuron.
- `random`: a seeded permutation (the baseline).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np

from concepts.errors import UserError
from neurons.ranking import Ranking
from probing.data import check_finite

log = logging.getLogger(__name__)


def _check(X: np.ndarray, y: np.ndarray, classes: list[str], finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2:
        raise UserError(f"activations must be [n, d]; got shape {X.shape}")
    if not len(X):
        raise UserError("no rows to rank neurons on: the activations are empty")
    if finite:
        check_finite(X, "the activations to rank")
    if len(y) != len(X):
        raise UserError(f"labels have length {len(y)} but the activations have {len(X)} rows; they must match")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise UserError(f"labels must be class indices in [0, {len(classes)}); got {y.min()}..{y.max()}")
    if len(np.unique(y)) < 2:
        raise UserError("neuron ranking needs labels of at least two classes")
    return X, y


def standardized(X: np.ndarray) -> np.ndarray:
    """`[n, d]` z-scored per neuron (a constant neuron stays 0)."""
    X = np.asarray(X, dtype=np.float32)
    sd = X.std(0, dtype=np.float64)
    return ((X - X.mean(0, dtype=np.float64)) / np.where(sd > 1e-12, sd, 1.0)).astype(np.float32)


class Ranker(ABC):
    name: str
    scale_sensitive = False  # does a neuron's scale change its rank (standardize matters)?

    def __init__(self, standardize: bool = False):
        self.standardize = standardize

    @abstractmethod
    def scores(self, X: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(per-class salience `[k, d]`, overall salience `[d]`)."""

    def rank(self, X: np.ndarray, y: np.ndarray, classes: list[str], neurons: list[str] | None = None,
             meta: dict | None = None, finite_checked: bool = False) -> Ranking:
        """Rank the `d` neurons of `X [n, d]` for labels `y [n]` (indices into `classes`).
        `finite_checked`: the caller has checked `X` for NaN and infinity already (many rankings
        of the same rows)."""
        X, y = _check(X, y, classes, finite=not finite_checked)
        names = neurons or [str(i) for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise UserError(f"{len(names)} neuron names for {X.shape[1]} neurons")
        per, overall = self.scores(standardized(X) if self.standardize else X, y, len(classes))
        return Ranking(self.name, list(classes), list(names), np.asarray(per, np.float32), np.asarray(overall, np.float32),
                       {**(meta or {}), "standardized": bool(self.standardize)})


def class_means(X: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(`[k, d]` mean of each class, `[k]` counts)."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    onehot = np.zeros((len(y), k), dtype=X.dtype)
    onehot[np.arange(len(y)), y] = 1
    sums = (onehot.T @ X).astype(np.float64)  # [k, d]; a matrix product, not np.add.at (slow)
    return sums / np.maximum(counts, 1)[:, None], counts


def pairwise_abs_sums(Q: np.ndarray) -> np.ndarray:
    """`[k, d]`: for each row c and column j, the sum over rows c' of |Q[c, j] - Q[c', j]|
    (by sorting each column: O(k log k) per column, not O(k^2))."""
    k = Q.shape[0]
    order = np.argsort(Q, axis=0, kind="stable")
    s = np.take_along_axis(Q, order, axis=0)
    before = np.cumsum(s, axis=0) - s  # sum of the smaller values
    i = np.arange(k, dtype=np.float64)[:, None]
    total = s.sum(0, keepdims=True)
    out_sorted = s * i - before + (total - before - s) - s * (k - 1 - i)
    out = np.empty_like(out_sorted)
    np.put_along_axis(out, order, out_sorted, axis=0)
    return out


class Probeless(Ranker):
    """Antverg & Belinkov (2022): pairwise differences of class means (NeuroX's formula)."""
    name = "probeless"
    scale_sensitive = True

    def scores(self, X, y, k):
        means, counts = class_means(X, y, k)
        present = counts > 0
        per = np.zeros_like(means)
        per[present] = pairwise_abs_sums(means[present])
        return per, per.sum(0) / 2  # every pair counted once


class ProbelessOneVsRest(Ranker):
    """A one-vs-rest variant of Probeless: each class mean against the mean of all other rows."""
    name = "probeless_ovr"
    scale_sensitive = True

    def signed(self, X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """`[k, d]` mean on class c minus mean on the rest."""
        means, counts = class_means(X, y, k)
        total = X.sum(0, dtype=np.float64)
        n = len(X)
        rest = (total[None, :] - means * counts[:, None]) / np.maximum(n - counts, 1)[:, None]
        return means - rest

    def scores(self, X, y, k):
        diff = np.abs(self.signed(X, y, k))
        return diff, diff.sum(0)


class ProbeWeights(Ranker):
    name = "probe_weights"

    def __init__(self, l1: float = 1e-4, l2: float = 1e-5, epochs: int = 30, lr: float = 1e-3, batch_size: int = 512,
                 seed: int = 0, device: str = "auto", standardize: bool = False):
        super().__init__(standardize)
        self.l1, self.l2, self.epochs, self.lr, self.batch_size, self.seed, self.device = l1, l2, epochs, lr, batch_size, seed, device

    def scores(self, X, y, k):
        from probing.data import ArrayDataModule
        from probing.fit import FitOptions, fit_probe

        opt = FitOptions(optimizer="adam", lr=self.lr, batch_size=self.batch_size, max_epochs=self.epochs, patience=0,
                         l1=self.l1, l2=self.l2, transform="zscore", device=self.device, seed=self.seed)
        fit = fit_probe(ArrayDataModule(X, y), k, opt)
        w = np.abs(fit.input_weights())  # [k, d] on z-scored neurons
        return w, (w / np.maximum(w.max(1, keepdims=True), 1e-12)).sum(0)


class IoU(Ranker):
    name = "iou"

    def __init__(self, quantile: float | None = None, both_tails: bool = True, standardize: bool = False):
        super().__init__(standardize)
        if quantile is not None and not 0 < quantile < 1:
            raise UserError(f"ranking.quantile={quantile} must be in (0, 1) or null")
        self.quantile, self.both_tails = quantile, both_tails

    def _iou(self, X: np.ndarray, mask: np.ndarray, m: int) -> np.ndarray:
        """IoU of each neuron's top-`m` mask with `mask` (`[n]` bool): `[d]`."""
        top = np.argpartition(-X, m - 1, axis=0)[:m]  # [m, d] rows of each neuron's top m
        inter = mask[top].sum(0)
        return inter / (m + mask.sum() - inter)

    def scores(self, X, y, k):
        n = len(X)
        out = np.zeros((k, X.shape[1]))
        for c in range(k):
            mask = y == c
            if not mask.any():
                continue
            m = int(mask.sum()) if self.quantile is None else max(1, int(round((1 - self.quantile) * n)))
            m = min(m, n)
            s = self._iou(X, mask, m)
            if self.both_tails:
                s = np.maximum(s, self._iou(-X, mask, m))
            out[c] = s
        return out, out.max(0)


class GaussianProbe(Ranker):
    name = "gaussian"

    def __init__(self, select: int = 20, max_examples: int = 5000, seed: int = 0, standardize: bool = False):
        super().__init__(standardize)
        self.select, self.max_examples, self.seed = select, max_examples, seed

    def scores(self, X, y, k):
        n_all, d = X.shape
        if n_all > self.max_examples:  # the greedy search runs on a seeded subsample
            idx = np.sort(np.random.default_rng(self.seed).choice(n_all, self.max_examples, replace=False))
            Xs, ys = X[idx], y[idx]
        else:
            Xs, ys = X, y
        Xs = Xs.astype(np.float64)
        n = len(Xs)
        means, counts = class_means(Xs, ys, k)
        prior = np.log(np.maximum(counts, 1) / n)
        var, _ = class_means((Xs - means[ys]) ** 2, ys, k)
        var = var + 1e-3 * Xs.var(0)[None, :] + 1e-12
        # T[j, i, c]: log density of example i's neuron j under class c (diagonal Gaussian)
        T = (-0.5 * ((Xs.T[:, :, None] - means.T[:, None, :]) ** 2 / var.T[:, None, :]
                     + np.log(var.T)[:, None, :])).astype(np.float32)
        rows = np.arange(n)

        def mean_loglik(Z: np.ndarray) -> np.ndarray:
            """Mean log p(y | x) for `Z [m, n, k]` summed log densities: `[m]`."""
            Z = Z + prior.astype(np.float32)
            top = Z.max(2, keepdims=True)
            lse = np.log(np.exp(Z - top).sum(2)) + top[:, :, 0]
            return (Z[:, rows, ys] - lse).mean(1)

        single = mean_loglik(T)
        chosen: list[int] = []
        acc = np.zeros((n, k), np.float32)
        for _ in range(min(self.select, d)):
            ll = mean_loglik(acc[None] + T)
            ll[chosen] = -np.inf
            best = int(np.argmax(ll))
            chosen.append(best)
            acc += T[best]
        # overall: the greedy picks first (in pick order), then the rest by single-neuron fit
        overall = -np.argsort(np.argsort(-single)).astype(float) - len(chosen)
        for i, j in enumerate(chosen):
            overall[j] = float(len(chosen) - i)
        sep = np.abs(means - Xs.mean(0)) / np.sqrt(Xs.var(0) + 1e-12)
        return sep, overall


class RandomRanker(Ranker):
    name = "random"

    def __init__(self, seed: int = 0, standardize: bool = False):
        super().__init__(standardize)
        self.seed = seed

    def scores(self, X, y, k):
        rng = np.random.default_rng(self.seed)
        d = X.shape[1]
        return rng.random((k, d)), rng.random(d)


RANKERS = {"probeless": Probeless, "probeless_ovr": ProbelessOneVsRest, "probe_weights": ProbeWeights, "iou": IoU, "gaussian": GaussianProbe, "random": RandomRanker}


def make_ranker(name: str, **params) -> Ranker:
    if name not in RANKERS:
        raise UserError(f"ranking.method={name!r}: use one of {', '.join(RANKERS)}")
    return RANKERS[name](**params)
