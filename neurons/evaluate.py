"""Evaluating a ranking: probes retrained on the top-k, random-k and bottom-k neurons; the
accuracy drop when the top-k (or random-k) neurons of a trained probe are ablated; Jaccard
overlap of top-k sets; and the paper's super/sub-concept overlap (Table 11)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from concepts.core.errors import UserError
from neurons.rankers import standardized
from neurons.ranking import Ranking
from probing.data import ArrayDataModule, check_finite
from probing.fit import FitOptions, FittedProbe, fit_probe


def resolve_ks(ks, dim: int) -> list[int]:
    """k given as counts (17) or percentages ("5%") -> counts in [1, dim], sorted, each once;
    a `UserError` for anything else (a k outside 1..dim, a fraction, a word, no ks at all)."""
    if isinstance(ks, (int, str, np.integer)):
        ks = [ks]
    out = []
    for k in ks:
        try:
            if isinstance(k, str) and k.strip().endswith("%"):
                v = max(1, int(round(float(k.strip()[:-1]) / 100 * dim)))
            elif isinstance(k, (bool, np.bool_)) or float(k) != int(float(k)):
                raise ValueError(k)
            else:
                v = int(float(k))
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"k={k!r} is neither a count of neurons (an integer) nor a percentage (\"5%\"); "
                            "fix neurons.ks") from None
        if not 0 < v <= dim:
            raise UserError(f"k={k} is outside 1..{dim} (the neurons ranked); lower neurons.ks")
        out.append(v)
    if not out:
        raise UserError("no k given: neurons.ks needs one count (or percentage) of neurons or more")
    return sorted(set(out))


@dataclass
class Data:
    """A probe's rows: train and test inputs `[n, d]` (raw activations, the neurons of the
    ranking in its order) and labels `[n]` (ids in [0, classes))."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: int


def check_data(data: Data, ranking: Ranking) -> Data:
    """`data` with float32 inputs and int labels, or a `UserError` naming the problem: inputs
    not 2-d or with other neurons than the ranking's, rows and labels that differ in number, an
    empty split, NaN or inf, labels outside [0, classes), fewer than two classes in training."""
    if not isinstance(data, Data):
        raise UserError(f"evaluation data must be a neurons.evaluate.Data; got {type(data).__name__}")
    check_ranking(ranking)
    if isinstance(data.classes, (bool, np.bool_)) or not isinstance(data.classes, (int, np.integer)) or data.classes < 2:
        raise UserError(f"Data.classes={data.classes!r} must be the number of classes, 2 or more")
    out = []
    for part, X, y in (("training", data.X_train, data.y_train), ("test", data.X_test, data.y_test)):
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2:
            raise UserError(f"the {part} inputs must be 2-d [rows, neurons]; got shape {X.shape}")
        if not len(X):
            raise UserError(f"the {part} split is empty: evaluating a ranking needs {part} rows")
        if X.shape[1] != ranking.dim:
            raise UserError(f"the {part} inputs have {X.shape[1]} neurons but the ranking ranks {ranking.dim}: "
                            "evaluate a ranking on the activations (the layer, the columns) it was made from")
        if y.ndim != 1 or len(y) != len(X):
            raise UserError(f"the {part} split has {len(X)} rows but labels of shape {y.shape}: give one label per row")
        if y.dtype.kind == "f" and np.isfinite(y).all() and np.array_equal(y, np.round(y)):
            y = y.astype(np.int64)
        if y.dtype.kind not in "iub":
            raise UserError(f"the {part} labels must be class ids (whole numbers in [0, {data.classes})); got {y.dtype}")
        if y.min() < 0 or y.max() >= data.classes:
            raise UserError(f"the {part} labels must be class ids in [0, {data.classes}) (Data.classes); "
                            f"got {y.min()}..{y.max()}")
        check_finite(X, f"the {part} inputs")
        out += [X, y.astype(np.int64)]
    if len(np.unique(out[1])) < 2:
        raise UserError("the training split holds one class only: a probe needs examples of 2 or more classes")
    return Data(*out, int(data.classes))


def check_ranking(ranking: Ranking) -> None:
    """A `UserError` unless `ranking` is a `Ranking` whose scores are finite and fit its neurons."""
    if not isinstance(ranking, Ranking):
        raise UserError(f"expected a neurons.ranking.Ranking; got {type(ranking).__name__}")
    overall = np.asarray(ranking.overall)
    if overall.shape != (ranking.dim,):
        raise UserError(f"the ranking's overall scores have shape {overall.shape} for {ranking.dim} neurons; "
                        "they must be one per neuron")
    if not np.isfinite(overall).all():
        raise UserError(f"the {ranking.method} ranking's overall scores hold NaN/inf; rank again on finite activations")


def _seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed={seed!r} must be a whole number >= 0")
    return int(seed)


def _acc(fit: FittedProbe, X: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.mean(fit.predict(X, mask) == y))


def retrain_curve(ranking: Ranking, data: Data, ks, opt: FitOptions, seed: int = 0) -> list[dict]:
    """Test accuracy of probes retrained on the top-k, random-k and bottom-k neurons (`ks`:
    counts or "N%", within 1..the neurons ranked), each trained as `opt` says."""
    data = check_data(data, ranking)
    ks = resolve_ks(ks, ranking.dim)
    if not isinstance(opt, FitOptions):
        raise UserError(f"opt must be a probing.fit.FitOptions (the probe's options); got {type(opt).__name__}")
    rng = np.random.default_rng(_seed(seed))
    order = ranking.order()
    rows = []
    for k in ks:
        for which, idx in (("top", order[:k]), ("random", rng.choice(ranking.dim, k, replace=False)),
                           ("bottom", order[-k:])):
            idx = np.sort(idx)
            fit = fit_probe(ArrayDataModule(data.X_train[:, idx], data.y_train), data.classes, opt)
            rows.append({"method": ranking.method, "k": k, "neurons": which, "accuracy": _acc(fit, data.X_test[:, idx], data.y_test)})
    return rows


def ablation(ranking: Ranking, fit: FittedProbe, data: Data, ks, seed: int = 0,
             value: str = "mean") -> list[dict]:
    """Accuracy of a probe trained on all neurons when the top-k or random-k neurons are set to
    their training mean (`value="mean"`, zero after z-scoring) or to zero (`"zero"`), and the
    drop from the full accuracy. `ks`: counts or "N%", within 1..the neurons ranked."""
    if value not in ("mean", "zero"):
        raise UserError(f"neurons.ablate={value!r}: use mean or zero")
    data = check_data(data, ranking)
    ks = resolve_ks(ks, ranking.dim)
    if not isinstance(fit, FittedProbe):
        raise UserError(f"ablation needs the trained probe (a probing.fit.FittedProbe); got {type(fit).__name__}")
    d_fit = len(np.asarray(fit.transform.mean))
    if d_fit != ranking.dim:
        raise UserError(f"the probe was trained on {d_fit} neurons but the ranking ranks {ranking.dim}: ablate a "
                        "probe trained on the ranked neurons (the same layer and columns)")
    if fit.classes != data.classes:
        raise UserError(f"the probe has {fit.classes} classes but the data {data.classes}: use the probe trained "
                        "on these labels")
    rng = np.random.default_rng(_seed(seed))
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
    """Jaccard overlap of the overall top-k sets of every pair of methods (rankings of the same
    neurons)."""
    names = sorted(rankings)
    for name in names:
        check_ranking(rankings[name])
        if rankings[name].neurons != rankings[names[0]].neurons:
            raise UserError(f"the rankings {names[0]!r} and {name!r} rank different neurons; compare rankings of "
                            "the same unit (layer)")
    if names:
        (k,) = resolve_ks([k], rankings[names[0]].dim)
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
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or not X.size:
        raise UserError(f"the activations to rank must be a non-empty 2-d array [rows, neurons]; got shape {X.shape}")
    if isinstance(top, (bool, np.bool_)) or not isinstance(top, (int, np.integer)) or not 0 < top <= X.shape[1]:
        raise UserError(f"neurons.top={top!r} must be a whole number in 1..{X.shape[1]} (the neurons ranked)")
    for sup, subs in groups.items():
        for sub, m in subs.items():
            m = np.asarray(m)
            if m.shape != (len(X),) or m.dtype != bool:
                raise UserError(f"the rows of {sup}/{sub} must be a boolean mask of the {len(X)} rows; got "
                                f"{m.dtype} of shape {m.shape}")
    check_finite(X, "the activations to rank")  # once, for all the rankings below
    if getattr(ranker, "standardize", False):
        X = standardized(X)
        ranker = copy.copy(ranker)
        ranker.standardize = False
    need = getattr(ranker, "min_class_rows", 1)  # rows each side of a ranking needs (gaussian: 2)
    rows = []
    for sup, subs in groups.items():
        union = np.zeros(len(X), dtype=bool)
        for m in subs.values():
            union |= m
        if union.all() or union.sum() < need or (~union).sum() < need:
            continue
        sup_top = ranker.rank(X, union.astype(int), ["rest", sup], finite_checked=True).top(top, 1)
        for sub, m in subs.items():
            if m.all() or m.sum() < need or (~m).sum() < need:
                continue
            sub_top = ranker.rank(X, m.astype(int), ["rest", sub], finite_checked=True).top(top, 1)
            shared = len(set(sup_top.tolist()) & set(sub_top.tolist()))
            rows.append({"super": sup, "sub": sub, "sub_tokens": int(m.sum()), "shared": shared, "share": shared / top})
    return rows
