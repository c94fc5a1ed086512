"""Choosing the probe's C (probing.regularization): the rule on known scores, a known best C on
synthetic data, agreement with scikit-learn's cross-validated accuracy, folds, the early stop."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import PredefinedSplit
from threadpoolctl import threadpool_limits

from probing.data import ArrayDataModule
from probing.fit import FitOptions, fit_probe
from probing.probe import make_probe
from probing.regularization import C_GRID, _Stop, choose, folds_of, select_l2
from probing.system import ProbeSystem


@pytest.fixture(autouse=True)
def one_thread():
    """Small fits: one thread is several times faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # scikit-learn's BLAS too
        yield
    torch.set_num_threads(before)


def _maker(d, classes):
    def make():
        torch.manual_seed(0)
        return ProbeSystem(make_probe("linear", d, classes), "lbfgs", 1.0, 0.0, 0.0, 500, 1e-4, None)
    return make


def _z(X, ref):
    mean, sd = ref.mean(0), ref.std(0)
    return ((X - mean) / np.where(sd > 1e-8, sd, 1)).astype(np.float32)


def test_the_rule_on_known_scores():
    acc = {0.01: 0.80, 0.1: 0.85, 1.0: 0.85, 10.0: 0.84}
    loss = {0.01: 0.50, 0.1: 0.40, 1.0: 0.45, 10.0: 0.60}
    assert choose(loss, acc, "accuracy") == 0.1  # the best accuracy
    assert choose({**loss, 1.0: 0.35}, acc, "accuracy") == 1.0  # equal accuracies: the lower loss
    assert choose({**loss, 1.0: 0.40}, acc, "accuracy") == 0.1  # equal both: the stronger penalty
    assert choose(loss, {**acc, 10.0: 0.86}, "accuracy") == 10.0  # accuracy first, whatever the loss
    # one standard error: 0.01 is 3 points below the best on average, but the parts disagree
    parts = {0.01: [0.70, 0.90, 0.80, 0.74, 0.86], 0.1: [0.85, 0.85, 0.85, 0.85, 0.85],
             1.0: [0.85, 0.85, 0.85, 0.85, 0.85], 10.0: [0.84, 0.84, 0.84, 0.84, 0.84]}
    low_loss = {**loss, 0.01: 0.30}
    assert choose(low_loss, {**acc, 0.01: 0.82}, "accuracy", parts) == 0.01  # within one SE (0.037): the lower loss
    steady = {**parts, 0.01: [0.82] * 5}  # the same mean, every part 3 points below: clearly worse
    assert choose(low_loss, {**acc, 0.01: 0.82}, "accuracy", steady) == 0.1
    assert choose(low_loss, {**acc, 0.01: 0.82}, "accuracy") == 0.1  # no parts: only equal accuracies tie
    assert choose(loss, acc, "loss") == 0.1
    assert choose({**loss, 0.01: 0.40}, acc, "loss") == 0.01  # equal losses: the stronger penalty
    with pytest.raises(ValueError, match="rule"):
        choose(loss, acc, "auc")


def _task(rng, n, d, informative, noise, classes=3):
    """Gaussian classes differing in `informative` of `d` dimensions; `noise` scales the rest."""
    means = np.zeros((classes, d))
    means[:, :informative] = rng.normal(size=(classes, informative))
    y = rng.integers(0, classes, n)
    X = means[y] + rng.normal(size=(n, d)) * np.r_[np.ones(informative), noise * np.ones(d - informative)]
    return X.astype(np.float32), y


def _oracle(Xtr, ytr, Xte, yte, grid):
    acc = {C: LogisticRegression(C=C, max_iter=5000).fit(Xtr, ytr).score(Xte, yte) for C in grid}
    return acc


def test_a_known_best_C_is_picked_or_one_as_good():
    """Few rows (150) in many noisy dimensions (100, 4 informative): the test set's accuracy
    peaks at C of 0.03-0.1 and collapses at the strong end (0.30 at C=0.001 against 0.40) and
    sags at the weak end. Over three draws the chosen C is within a point of the best on average,
    never at the collapsing end, and the neighbour of the best or as good within 1.5 points."""
    gaps = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X, y = _task(rng, 150 + 10000, 100, 4, 1.0, classes=5)
        X = _z(X, X[:150])
        acc = _oracle(X[:150], y[:150], X[150:], y[150:], C_GRID)
        best = max(acc, key=acc.get)
        sel = select_l2(_maker(100, 5), torch.from_numpy(X[:150]), torch.as_tensor(y[:150]), None, None,
                        min_rows_accuracy=0)  # the accuracy rule even on 150 rows
        assert sel.how == "cv5" and sel.C >= 0.01, (sel.C, acc)
        assert abs(C_GRID.index(sel.C) - C_GRID.index(best)) <= 1 or acc[sel.C] >= acc[best] - 0.015, (sel.C, acc)
        gaps.append(acc[best] - acc[sel.C])
    assert np.mean(gaps) < 0.01, gaps


def test_cross_validated_accuracy_matches_sklearn_on_the_same_folds():
    """Our held-out accuracy per C, pooled over 5 folds, against scikit-learn's
    LogisticRegressionCV on the very folds (PredefinedSplit): the same curve up to a row or
    two per C (two optimisers stopping at tolerance), and the same choice of C or one as good."""
    rng = np.random.default_rng(2)
    X, y = _task(rng, 400, 30, 6, 1.5, classes=4)
    X = _z(X, X)
    fold = folds_of(len(X), 5, 0, torch.as_tensor(y))
    grid = C_GRID[:9]  # up to 10: past it both fits barely move
    sel = select_l2(_maker(30, 4), torch.from_numpy(X), torch.as_tensor(y), None, None, grid, patience=None)
    assert sel.how == "cv5"
    sk = LogisticRegressionCV(Cs=list(grid), cv=PredefinedSplit(fold), scoring="accuracy", max_iter=5000, tol=1e-6)
    sk.fit(X, y)
    sizes = np.bincount(fold)
    pooled = (sk.scores_[0] * sizes[:, None]).sum(0) / sizes.sum()  # folds' accuracies weighted by rows
    ours = np.array([sel.accuracies[C] for C in grid])
    assert np.abs(ours - pooled).max() <= 2.5 / len(X), (ours, pooled)
    # the choice: within one standard error of sklearn's best (on sklearn's own fold scores)
    b = int(np.argmax(pooled))
    diff = sk.scores_[0][:, grid.index(sel.C)] - sk.scores_[0][:, b]
    assert pooled[grid.index(sel.C)] >= pooled[b] - diff.std(ddof=1) / np.sqrt(5) - 2.5 / len(X)
    assert sel.C == choose(sel.losses, sel.accuracies, "accuracy", sel.part_accuracies)
    assert all(len(v) == 5 for v in sel.part_accuracies.values())


def test_folds_are_stratified_and_seeded():
    y = np.r_[np.zeros(53), np.ones(21), np.full(7, 2)].astype(int)
    fold = folds_of(len(y), 5, 3, torch.as_tensor(y))
    for c in range(3):
        per = np.bincount(fold[y == c], minlength=5)
        assert per.max() - per.min() <= 1  # every fold its share of each class
    assert np.bincount(fold).max() - np.bincount(fold).min() <= 2
    assert (fold == folds_of(len(y), 5, 3, torch.as_tensor(y))).all()
    assert not (fold == folds_of(len(y), 5, 4, torch.as_tensor(y))).all()


def test_the_early_stop():
    stop = _Stop("accuracy", 2)
    # accuracy on a plateau, loss rising: not worse (equal accuracy may still win on a later tie? no: it
    # loses the tie on loss) -- it stops only once accuracy falls *and* loss rises, twice in a row
    assert [stop(loss, acc) for loss, acc in [(0.9, 0.7), (0.5, 0.8), (0.6, 0.8), (0.7, 0.79), (0.8, 0.78)]] == \
        [False, False, False, False, True]
    stop = _Stop("accuracy", 2)  # accuracy falling while the loss still improves: go on
    assert not any(stop(loss, acc) for loss, acc in [(0.9, 0.8), (0.8, 0.79), (0.7, 0.78), (0.6, 0.77)])
    stop = _Stop("loss", 2)
    assert [stop(loss, 0.5) for loss in (0.9, 0.5, 0.6, 0.7)] == [False, False, False, True]
    assert not any(_Stop("accuracy", None)(1.0 + i, 0.9 - i / 10) for i in range(5))


def test_the_path_stops_where_the_rule_says_and_still_picks_the_best_of_what_it_saw():
    rng = np.random.default_rng(3)
    X, y = _task(rng, 300, 60, 3, 1.0)
    X = _z(X, X)
    args = (_maker(60, 3), torch.from_numpy(X[:200]), torch.as_tensor(y[:200]), torch.from_numpy(X[200:]),
            torch.as_tensor(y[200:]))
    full = select_l2(*args, patience=None, cv_below=0, min_rows_accuracy=0)
    early = select_l2(*args, patience=2, cv_below=0, min_rows_accuracy=0)
    assert full.how == early.how == "dev" and len(full.losses) == len(C_GRID)
    assert len(early.losses) < len(full.losses) and early.steps < full.steps  # it did stop early
    assert early.C == choose(early.losses, early.accuracies, "accuracy", early.part_accuracies)
    assert early.C == full.C  # stopping early changes nothing it would have picked
    for C in early.losses:  # the same fits up to where it stopped
        assert early.losses[C] == pytest.approx(full.losses[C], rel=1e-5)


def test_few_held_out_rows_fall_back_to_the_loss_rule():
    rng = np.random.default_rng(5)
    X, y = _task(rng, 299, 10, 4, 1.0)
    X = _z(X, X)
    args = (_maker(10, 3), torch.from_numpy(X[:200]), torch.as_tensor(y[:200]), torch.from_numpy(X[200:]),
            torch.as_tensor(y[200:]))
    small = select_l2(*args)  # 299 rows in cross-validation: under 300
    assert small.how == "cv5" and small.rule == "loss"
    assert small.C == choose(small.losses, small.accuracies, "loss")
    assert select_l2(*args, min_rows_accuracy=299).rule == "accuracy"
    assert select_l2(*args, cv_below=0).rule == "loss"  # dev mode: 99 dev rows
    assert select_l2(*args, cv_below=0, min_rows_accuracy=99).rule == "accuracy"


def test_fit_probe_uses_the_rule_and_its_options():
    rng = np.random.default_rng(4)
    X, y = _task(rng, 400, 40, 4, 1.0)
    dm = lambda: ArrayDataModule(X[:300], y[:300], X[300:], y[300:])  # noqa: E731
    new = fit_probe(dm(), 3, FitOptions())
    old = fit_probe(dm(), 3, FitOptions(select_rule="loss"))
    assert new.selection.rule == "accuracy" and old.selection.rule == "loss"
    assert new.selection.how == "cv5"  # 400 rows: cross-validation
    assert new.selection.C == choose(new.selection.losses, new.selection.accuracies, "accuracy",
                                     new.selection.part_accuracies)
    assert old.selection.C == choose(old.selection.losses, old.selection.accuracies, "loss")
    assert fit_probe(dm(), 3, FitOptions(cv_below=100)).selection.how == "dev"
