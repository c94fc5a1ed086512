"""Neuron rankers, one interface: `ranker.rank(X [n, d], y [n], classes) -> Ranking`.

Every ranker takes `standardize`: rank z-scored activations (each neuron's mean and sd over
the rows ranked) instead of raw ones. It matters for the scale-sensitive methods (the two
Probeless ones, `scale_sensitive = True`): on raw activations a wide "outlier" neuron with no
class information outranks informative ones, and BERT-family models have such dimensions.
The others are invariant to a neuron's scale (probe_weights z-scores its inputs itself).

The defaults (`DEFAULTS`) are the command line's: `neurons.config.RankingConfig` and
`conf/ranking/*.yaml` take theirs from here, so `make_ranker(name)` in a notebook ranks as
`python -m neurons.rank ranking=<name>` does (a test holds them equal).

- `probeless` (Antverg & Belinkov 2022, as NeuroX's `interpretation.probeless`): with q(c)
  the mean of a neuron on class c, the salience for class c is the sum over the other classes
  c' of |q(c) - q(c')|, and overall the sum over class pairs (classes absent from the rows
  ranked are left out).
- `probeless_ovr`, a one-vs-rest variant: |mean on class c - mean on the rest|; overall the
  sum over classes.
- `probe_weights` (Dalvi et al. 2019): the absolute weights of the probing module's linear
  probe, trained as its `fit` options say (`probing.fit.FitOptions`; by default the probing
  default: full-batch L-BFGS to convergence on z-scored inputs, C chosen on held-out rows; the
  command line passes the run's `probe` config). The weights are read on z-scored neurons and
  in the softmax's identified form, centred over the classes (adding one vector to every
  class's weights changes no prediction; the L2 optimum has them centred, and centring drops
  what a fit stopped at its tolerance left of its random start there). Per class |w_c|;
  overall the sum over classes of |w_c| / max|w_c|. With two classes the rows are mirror
  images (w_1 = -w_0), so both orders, and the overall one, are that of |w_1 - w_0|,
  scikit-learn's binary coefficient. Classes without rows are left out. The ranking's meta
  records the probe (`meta["probe"]`: C, l2, how C was chosen, convergence). An L-BFGS probe
  is polished first (`polish`): L-BFGS goes on at the C chosen until max|gradient| < 1e-6, as
  the probe's tolerance (1e-4) is enough for its accuracy but not for the order of its weights
  where C is large and neurons are correlated (a synthetic binary probe at C=100 shared 8 of
  scikit-learn's top 10 at tol 1e-4, and 10 polished).
- `iou` (Mu & Andreas 2020): a neuron's mask is its top activations (the top `quantile`, or by
  default as many as the class has tokens), IoU with the class mask; with `both_tails` the
  bottom tail counts too (the larger IoU wins); overall the max over classes.
- `gaussian` (after Torroba Hennigen et al. 2020, with a diagonal covariance): greedy forward
  selection of `select` neurons that most raise the training log-likelihood of a Gaussian
  classifier; the rest follow by their single-neuron log-likelihood gain. Per class: the
  class-conditional separation (|mean_c - mean| / sd) of each neuron. Every class ranked needs
  two rows or more (a variance per class).
- `random`: a seeded permutation (the baseline).

Inputs are checked (`check_inputs`): a `UserError` of one line names what is wrong and the fix.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod

import numpy as np

from concepts.core.errors import UserError
from neurons.ranking import Ranking
from probing.data import ArrayDataModule, check_finite
from probing.fit import FitOptions, FittedProbe, fit_probe

log = logging.getLogger(__name__)

# The one source of the rankers' defaults: the rankers' own, `neurons.config.RankingConfig`'s
# and so the command line's (conf/ranking/*.yaml must not contradict them: tests/test_ranker_api.py)
DEFAULTS = {
    "standardize": True,  # every ranker: rank z-scored activations (a wide uninformative neuron cannot lead)
    "seed": 0,  # random, gaussian (its subsample)
    "quantile": None,  # iou: top-activation quantile; None = as many as the class has tokens
    "both_tails": True,  # iou
    "select": 20,  # gaussian: neurons chosen greedily
    "max_examples": 5000,  # gaussian: the greedy search runs on at most this many rows (seeded)
    "polish": 1e-6,  # probe_weights: L-BFGS goes on at the probe's C to this max |gradient| (None: as trained)
}


def check_inputs(X, y, classes, finite: bool = True, neurons: list[str] | None = None,
                 min_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`X [n, d]` as float32 and `y [n]` as int64, or a `UserError` naming the problem and its
    fix: X not a 2-d array of numbers, no rows or no neurons, NaN or inf (unless `finite` is
    False: checked by the caller), labels not one whole number per row, labels outside
    [0, len(classes)), fewer than two class names or two of the same name, fewer than two
    classes with rows, a class with fewer than `min_rows` rows (for rankers that need more than
    one), neuron names that do not match the columns."""
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise UserError(f"activations must be a 2-d array of numbers [rows, neurons] ({e})") from None
    if X.ndim != 2:
        raise UserError(f"activations must be a 2-d array [rows, neurons]; got shape {X.shape} "
                        "(one row: X[None, :]; one neuron: X[:, None])")
    if not len(X):
        raise UserError("no rows to rank neurons on: the activations are empty")
    if not X.shape[1]:
        raise UserError("no neurons to rank: the activations have 0 columns")
    classes = list(classes) if classes is not None else []
    if len(classes) < 2:
        raise UserError(f"neuron ranking needs at least two class names; got {classes!r}")
    if len(set(map(str, classes))) != len(classes):
        raise UserError(f"class names must be distinct; got {classes!r}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"labels must be a 1-d array, one class index per row; got shape {y.shape}")
    if len(y) != len(X):
        raise UserError(f"labels have length {len(y)} but the activations have {len(X)} rows; they must match")
    if y.dtype.kind == "f" and np.isfinite(y).all() and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise UserError(f"labels must be class indices (whole numbers in [0, {len(classes)})); got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= len(classes):
        raise UserError(f"labels must be class indices in [0, {len(classes)}) (one per class name); "
                        f"got {y.min()}..{y.max()}")
    counts = np.bincount(y, minlength=len(classes))
    if (counts > 0).sum() < 2:
        raise UserError("neuron ranking needs labels of at least two classes; the rows hold only "
                        f"{classes[int(np.argmax(counts))]!r}")
    few = np.flatnonzero((counts > 0) & (counts < min_rows))
    if len(few):
        raise UserError(f"class {classes[few[0]]!r} has {counts[few[0]]} row(s); this ranker needs at least "
                        f"{min_rows} per class: drop such classes (probing.min_examples) or use another ranking")
    if neurons is not None and len(neurons) != X.shape[1]:
        raise UserError(f"{len(neurons)} neuron names for {X.shape[1]} neurons; give one name per column")
    if finite:
        check_finite(X, "the activations to rank")
    return X, y


def standardized(X: np.ndarray) -> np.ndarray:
    """`[n, d]` z-scored per neuron (a constant neuron stays 0)."""
    X = np.asarray(X, dtype=np.float32)
    sd = X.std(0, dtype=np.float64)
    return ((X - X.mean(0, dtype=np.float64)) / np.where(sd > 1e-12, sd, 1.0)).astype(np.float32)


class Ranker(ABC):
    name: str
    scale_sensitive = False  # does a neuron's scale change its rank (standardize matters)?
    min_class_rows = 1  # rows a class needs to be ranked for

    def __init__(self, standardize: bool = DEFAULTS["standardize"]):
        if not isinstance(standardize, (bool, np.bool_)):
            raise UserError(f"standardize={standardize!r}: use true or false")
        self.standardize = bool(standardize)

    @abstractmethod
    def scores(self, X: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(per-class salience `[k, d]`, overall salience `[d]`)."""

    def fit_scores(self, X: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """`scores` and what the ranking's meta should record of how they were made."""
        per, overall = self.scores(X, y, k)
        return per, overall, {}

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """The activations the scores are computed on: z-scored when `standardize`."""
        return standardized(X) if self.standardize else X

    def rank(self, X: np.ndarray, y: np.ndarray, classes: list[str], neurons: list[str] | None = None,
             meta: dict | None = None, finite_checked: bool = False) -> Ranking:
        """Rank the `d` neurons of `X [n, d]` for labels `y [n]` (indices into `classes`).
        `finite_checked`: the caller has checked `X` for NaN and infinity already (many rankings
        of the same rows)."""
        X, y = check_inputs(X, y, classes, not finite_checked, neurons, self.min_class_rows)
        names = list(neurons) if neurons is not None else [str(i) for i in range(X.shape[1])]
        per, overall, made = self.fit_scores(self.inputs(X), y, len(classes))
        return Ranking(self.name, list(classes), names, np.asarray(per, np.float32), np.asarray(overall, np.float32),
                       {**(meta or {}), **made, "standardized": bool(self.standardize)})


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


def weight_scores(W: np.ndarray, present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(per class `[k, d]`, overall `[d]`) of a softmax probe's weights `W [k, d]` (every row of
    the probe): per class |w_c| of the weights centred over the classes (the identified form,
    see the module's docstring), overall the sum over classes of |w_c| / max|w_c|. `present
    [k]` (bool): the classes that had training rows; the others score 0 and are left out."""
    W = np.asarray(W, dtype=np.float64)
    per = np.abs(W - W.mean(0, keepdims=True))
    if present is not None:
        per[~np.asarray(present, dtype=bool)] = 0
    top = per.max(1, keepdims=True)
    keep = top[:, 0] > 0
    return per, (per[keep] / top[keep]).sum(0)


def probe_meta(probe: FittedProbe, opt: FitOptions, polish: float | None = None) -> dict:
    """What a ranking records of the probe behind it: the C it was trained at (None when the
    penalty was fixed, `select` off or Adam), its l2, how C was chosen, convergence, polish."""
    sel = probe.selection
    return {"C": float(sel.C) if sel is not None else None, "l2": float(probe.l2), "polish": polish,
            "selected_by": (sel.how if sel is not None else "fixed"),
            "rule": getattr(sel, "rule", None) if sel is not None else None,
            "converged": probe.converged, "kind": opt.kind, "optimizer": opt.optimizer, "transform": opt.transform,
            "l1": float(opt.l1), "balanced": bool(opt.balanced), "c_grid": [float(c) for c in opt.c_grid]}


class ProbeWeights(Ranker):
    """Dalvi et al. (2019): |weights| of the probing module's linear probe (see the module's
    docstring). `fit`: how the probe is trained (`probing.fit.FitOptions`; None = its defaults,
    the probing default `conf/probe/linear.yaml`); `python -m neurons.rank` passes the run's
    `probe` config, and ranks and ablates one probe (`rank_probe`)."""
    name = "probe_weights"

    def __init__(self, fit: FitOptions | None = None, polish: float | None = DEFAULTS["polish"],
                 standardize: bool = DEFAULTS["standardize"]):
        super().__init__(standardize)
        if polish is not None and not (isinstance(polish, (int, float)) and not isinstance(polish, bool) and polish > 0):
            raise UserError(f"ranking.polish={polish!r} must be a tolerance > 0 (max |gradient|) or null (no polish)")
        self.polish = None if polish is None else float(polish)
        if fit is None:
            fit = FitOptions()
        if not isinstance(fit, FitOptions):
            raise UserError(f"probe_weights: fit={fit!r} must be a probing.fit.FitOptions (the probe's options; "
                            "probing.train.fit_options(cfg) makes them from a config)")
        if fit.kind != "linear":
            raise UserError(f"ranking=probe_weights ranks a linear probe's weights, and probe.kind={fit.kind!r} has no "
                            "weight per neuron: use probe=linear (or another ranking)")
        self.fit = fit

    def inputs(self, X: np.ndarray) -> np.ndarray:
        # a probe that z-scores its inputs needs no z-scoring before (it would only add rounding)
        return standardized(X) if self.standardize and self.fit.transform == "none" else X

    def polishes(self) -> bool:
        return self.polish is not None and self.fit.optimizer == "lbfgs" and self.polish < self.fit.tol

    def train(self, X: np.ndarray, y: np.ndarray, k: int, X_dev=None, y_dev=None) -> FittedProbe:
        """The probe on `X [n, d]`, `y [n]` (ids in [0, k)), trained as `fit` says (C chosen on
        the dev rows when given and large enough, else by cross-validation:
        `probing.regularization`), then polished (`polish`) on the training rows."""
        dm = ArrayDataModule(X, y, X_dev, y_dev)
        probe = fit_probe(dm, k, self.fit)
        if self.polishes():
            system = probe.system
            x, yt = (t.to(system.device) for t in dm.tensors("train"))
            tol, system.tol = system.tol, self.polish
            try:
                system.run_lbfgs(x, yt)
            finally:
                system.tol = tol
            if not system.converged:
                log.warning("probe_weights: the probe's polish to max|gradient| < %g stopped at max_iter=%d; its "
                            "weights' order may be off (raise probe.max_iter)", self.polish, self.fit.max_iter)
        return probe

    def fit_scores(self, X, y, k):
        present = np.bincount(y, minlength=k) > 0
        ids = np.flatnonzero(present)
        index = np.full(k, -1)
        index[ids] = np.arange(len(ids))
        probe = self.train(X, index[y], len(ids))  # no weights for classes without rows
        sub, overall = weight_scores(probe.input_weights())
        per = np.zeros((k, X.shape[1]))
        per[ids] = sub
        log.debug("probe_weights: C=%s (%s), l2=%.3g", probe.selection.C if probe.selection else None,
                  probe.selection.how if probe.selection else "fixed", probe.l2)
        return per, overall, {"probe": self.meta(probe)}

    def meta(self, probe: FittedProbe) -> dict:
        return probe_meta(probe, self.fit, self.polish if self.polishes() else None)

    def scores(self, X, y, k):
        per, overall, _ = self.fit_scores(X, y, k)
        return per, overall

    def rank_probe(self, probe: FittedProbe, classes: list[str], neurons: list[str] | None = None,
                   meta: dict | None = None, present: np.ndarray | None = None) -> Ranking:
        """Rank neurons by the weights of a probe already trained by `self.train` on the rows to
        rank (raw activations; the probe z-scores its inputs as `fit.transform` says), so that
        the ranking and the evaluation (ablation) read one probe. `present [k]` (bool): the
        classes with training rows (the others are left out)."""
        if not isinstance(probe, FittedProbe):
            raise UserError(f"rank_probe needs a probing.fit.FittedProbe; got {type(probe).__name__}")
        W = probe.input_weights()
        if len(classes) != W.shape[0]:
            raise UserError(f"the probe has {W.shape[0]} classes but {len(classes)} class names were given")
        if neurons is not None and len(neurons) != W.shape[1]:
            raise UserError(f"{len(neurons)} neuron names for the probe's {W.shape[1]} input neurons")
        if present is not None and np.asarray(present).shape != (W.shape[0],):
            raise UserError(f"present must be [{W.shape[0]}] booleans, one per class")
        per, overall = weight_scores(W, present)
        names = list(neurons) if neurons is not None else [str(i) for i in range(W.shape[1])]
        return Ranking(self.name, list(classes), names, per.astype(np.float32), overall.astype(np.float32),
                       {**(meta or {}), "probe": self.meta(probe), "standardized": bool(self.standardize)})


class IoU(Ranker):
    name = "iou"

    def __init__(self, quantile: float | None = DEFAULTS["quantile"], both_tails: bool = DEFAULTS["both_tails"],
                 standardize: bool = DEFAULTS["standardize"]):
        super().__init__(standardize)
        if quantile is not None and not (isinstance(quantile, (int, float)) and 0 < quantile < 1):
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
    min_class_rows = 2  # a variance per class

    def __init__(self, select: int = DEFAULTS["select"], max_examples: int = DEFAULTS["max_examples"],
                 seed: int = DEFAULTS["seed"], standardize: bool = DEFAULTS["standardize"]):
        super().__init__(standardize)
        if not isinstance(select, (int, np.integer)) or isinstance(select, bool) or select < 1:
            raise UserError(f"ranking.select={select!r} must be a whole number >= 1 (neurons chosen greedily)")
        if not isinstance(max_examples, (int, np.integer)) or isinstance(max_examples, bool) or max_examples < 2:
            raise UserError(f"max_examples={max_examples!r} must be a whole number >= 2 (rows of the greedy search)")
        self.select, self.max_examples, self.seed = int(select), int(max_examples), seed

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

    def __init__(self, seed: int = DEFAULTS["seed"], standardize: bool = DEFAULTS["standardize"]):
        super().__init__(standardize)
        self.seed = seed

    def scores(self, X, y, k):
        rng = np.random.default_rng(self.seed)
        d = X.shape[1]
        return rng.random((k, d)), rng.random(d)


RANKERS = {"probeless": Probeless, "probeless_ovr": ProbelessOneVsRest, "probe_weights": ProbeWeights, "iou": IoU, "gaussian": GaussianProbe, "random": RandomRanker}


def make_ranker(name: str, **params) -> Ranker:
    """The ranker `name` with `params` (the rest at `DEFAULTS`, the command line's defaults)."""
    if name not in RANKERS:
        raise UserError(f"ranking.method={name!r}: use one of {', '.join(RANKERS)}")
    takes = [p for p in inspect.signature(RANKERS[name].__init__).parameters if p != "self"]
    bad = sorted(set(params) - set(takes))
    if bad:
        raise UserError(f"ranking {name!r} has no option {', '.join(bad)}; it takes {', '.join(takes)}")
    return RANKERS[name](**params)
