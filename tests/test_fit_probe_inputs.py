"""`fit_probe` refuses bad inputs with one-line `UserError`s, and its `steps` counts every
L-BFGS function evaluation: the regularisation path that chose C as well as the final fit."""

import numpy as np
import pytest
import torch

from concepts.core.errors import UserError
from probing.data import ArrayDataModule
from probing.fit import FitOptions, fit_probe


def _data(n=60, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = (rng.normal(size=(n, d)) + np.eye(classes, d)[y] * 2).astype(np.float32)
    return X, y


def _raises(match: str, *arrays, classes=3, **opt):
    with pytest.raises(UserError, match=match) as err:
        fit_probe(ArrayDataModule(*arrays), classes, FitOptions(**opt))
    assert "\n" not in str(err.value)  # one line
    return str(err.value)


@pytest.mark.parametrize("part", ["train", "dev", "test"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_any_split(part, value):
    X, y = _data()
    splits = {"train": (X[:30].copy(), y[:30]), "dev": (X[30:45].copy(), y[30:45]), "test": (X[45:].copy(), y[45:])}
    splits[part][0][4, 1] = value
    name = "training inputs" if part == "train" else f"{part} split's inputs"
    msg = _raises(rf"{name} hold 1 NaN/inf value\(s\) \(first: row 4, neuron 1\)",
                  *splits["train"], *splits["dev"], *splits["test"])
    assert "re-extract the store or drop those rows" in msg  # says how to fix


def test_nan_only_in_dev_with_selection_off_too():
    X, y = _data()
    Xd = X[40:].copy()
    Xd[0, 0] = np.nan
    _raises("dev split's inputs hold", X[:40], y[:40], Xd, y[40:], select=False)


def test_one_training_row():
    X, y = _data()
    _raises("training split has 1 row: a probe needs at least 2 training rows", X[:1], y[:1])


def test_a_single_class_in_training():
    X, _ = _data()
    msg = _raises(r"training split holds one class only \(class id 2, 40 rows\)", X[:40], np.full(40, 2))
    assert "2 or more classes" in msg
    # also with selection off and with Adam: it never trains silently
    _raises("one class only", X[:40], np.zeros(40, int), select=False)
    _raises("one class only", X[:40], np.zeros(40, int), optimizer="adam", max_epochs=1)


@pytest.mark.parametrize("part", ["train", "dev", "test"])
@pytest.mark.parametrize("bad", [3, -1, 7])
def test_label_ids_outside_the_classes(part, bad):
    X, y = _data()
    splits = {"train": (X[:30], y[:30].copy()), "dev": (X[30:45], y[30:45].copy()), "test": (X[45:], y[45:].copy())}
    splits[part][1][5] = bad
    what = {"train": "training split", "dev": "dev split", "test": "test split"}[part]
    msg = _raises(rf"{what} has 1 label\(s\) outside \[0, 3\) \(first: {bad} at row 5\)",
                  *splits["train"], *splits["dev"], *splits["test"])
    assert "class ids below the number of classes, 3" in msg


def test_labels_that_are_not_class_ids():
    X, y = _data()
    _raises("labels are of type", X[:30], y[:30] + 0.5)
    _raises("labels are of type", X[:30], y[:30].astype(str))
    fit_probe(ArrayDataModule(X[:30], y[:30].astype(np.float64)), 3, FitOptions(select=False))  # whole floats are ids


@pytest.mark.parametrize("part", ["train", "dev", "test"])
def test_rows_and_labels_differ_in_number(part):
    X, y = _data()
    splits = {"train": [X[:30], y[:30]], "dev": [X[30:45], y[30:45]], "test": [X[45:], y[45:]]}
    splits[part][1] = splits[part][1][:-2]
    what = {"train": "training split", "dev": "dev split", "test": "test split"}[part]
    n = len(splits[part][0])
    msg = _raises(rf"{what} has {n} rows but {n - 2} labels", *splits["train"], *splits["dev"], *splits["test"])
    assert "one label per row" in msg


def test_dev_or_test_with_other_columns():
    X, y = _data(d=6)
    _raises("dev split has 4 columns but the training split has 6", X[:30], y[:30], X[30:45, :4], y[30:45])
    msg = _raises("test split has 5 columns but the training split has 6",
                  X[:30], y[:30], X[30:45], y[30:45], X[45:, :5], y[45:])
    assert "same neurons" in msg


def test_good_inputs_still_fit():
    X, y = _data()
    fit = fit_probe(ArrayDataModule(X[:40], y[:40], X[40:], y[40:]), 3, FitOptions())
    assert fit.selection is not None and fit.predict(X).shape == (60,)


class _CountingLBFGS:
    """Counts every closure call of every `torch.optim.LBFGS.step`, from outside the probe."""

    def __init__(self, monkeypatch):
        self.calls = 0
        step = torch.optim.LBFGS.step

        def counted(opt, closure):
            def wrapped():
                self.calls += 1
                return closure()
            return step(opt, wrapped)

        monkeypatch.setattr(torch.optim.LBFGS, "step", counted)


@pytest.mark.parametrize("n_dev", [20, 3000])  # cross-validation (train + dev small), and the dev split
def test_steps_count_the_selection_path_and_the_final_fit(monkeypatch, n_dev):
    X, y = _data(n=200 + n_dev, d=8, classes=3)
    counter = _CountingLBFGS(monkeypatch)
    fit = fit_probe(ArrayDataModule(X[:200], y[:200], X[200:], y[200:]), 3, FitOptions(cv_below=1000))
    assert fit.selection.how == ("cv5" if n_dev == 20 else "dev")
    assert fit.steps == counter.calls  # every function evaluation, nothing else
    assert 0 < fit.selection_steps == fit.selection.steps < fit.steps
    n_fits = len(fit.selection.losses) * (5 if n_dev == 20 else 1)  # one path fit per grid point reached (and fold)
    assert fit.selection_steps >= n_fits


def test_steps_without_selection_count_the_one_fit(monkeypatch):
    X, y = _data()
    counter = _CountingLBFGS(monkeypatch)
    fit = fit_probe(ArrayDataModule(X, y), 3, FitOptions(select=False))
    assert fit.steps == counter.calls > 0 and fit.selection_steps == 0
