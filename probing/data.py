"""Data for probes: label sets, splits, and Lightning data modules.

`ArrayDataModule` serves in-memory arrays; `StoreDataModule` reads only the rows a label set
names from one layer of the memory-mapped activation store (never the whole store). Both
transform the inputs with statistics of the training split, kept for later predictions:
`zscore` (per-neuron mean and sd; the default, sound at any number of rows), `whiten` (PCA
whitening: decorrelated, unit variance; fewer L-BFGS steps, but with fewer training rows than
dimensions the covariance is rank-deficient and unseen directions are blown up) or `none`.
Word types (control tasks, the type split) follow `probing.wordtypes`: case-folded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from concepts.core.errors import UserError
from probing.wordtypes import word_types

log = logging.getLogger(__name__)


@dataclass
class LabelSet:
    """Examples of one probing task.

    rows `[n]`: store rows; y `[n]`: class ids into `classes`; words and sentences `[n]`:
    the word and sentence id of each example (for control tasks and splits).
    """
    name: str
    rows: np.ndarray
    y: np.ndarray
    classes: list[str]
    words: np.ndarray
    sentences: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Split:
    train: np.ndarray  # indices into the label set
    dev: np.ndarray
    test: np.ndarray


_GOLDEN = (5 ** 0.5 - 1) / 2  # a low-discrepancy step: consecutive multiples mod 1 spread evenly over [0, 1)


def split_examples(labels: LabelSet, by: str = "sentence", train: float = 0.6, dev: float = 0.2, seed: int = 0,
                   stratify: bool = True) -> Split:
    """Split by sentence (no sentence in two parts) or by word type (test types unseen in
    training; types are case-folded, `probing.wordtypes`).

    `stratify`: the groups (sentences or types) are stratified by label, so that every class
    with a few groups reaches every part, a rare concept's tokens included: each group's
    stratum is the rarest label it holds; within a stratum the groups are shuffled (seeded) and
    dealt to train/dev/test by a low-discrepancy sequence, so each stratum (and the whole) is
    split in the given shares up to one group. Without it, the groups are shuffled and cut."""
    if by not in ("sentence", "type"):
        raise UserError(f"split.by={by!r}: use sentence or type")
    if not len(labels):
        raise UserError(f"{labels.name}: no examples to split")
    keys = labels.sentences if by == "sentence" else word_types(labels.words)
    uniq, inverse = np.unique(keys, return_inverse=True)
    rng = np.random.default_rng(seed)
    if stratify:
        y = np.asarray(labels.y, dtype=np.int64)
        freq = np.bincount(y)
        code = freq[y] * (len(freq) + 1) + y  # ordered by label frequency, then label id
        rarest = np.full(len(uniq), np.iinfo(np.int64).max)
        np.minimum.at(rarest, inverse, code)
        stratum = rarest % (len(freq) + 1)  # per group: its rarest label
        # groups ordered by stratum, shuffled within it; position g goes to the part where frac(offset + g * golden) falls
        perm = np.lexsort((rng.random(len(uniq)), stratum))
        h = (rng.random() + np.arange(len(uniq)) * _GOLDEN) % 1.0
        part_of_group = np.empty(len(uniq), dtype=np.int8)
        part_of_group[perm] = np.where(h < train, 0, np.where(h < train + dev, 1, 2))
        which = part_of_group[inverse]
    else:
        shuffled = uniq.copy()
        rng.shuffle(shuffled)
        n_train, n_dev = int(round(train * len(uniq))), int(round(dev * len(uniq)))
        part = {k: 0 for k in shuffled[:n_train]} | {k: 1 for k in shuffled[n_train:n_train + n_dev]} | \
            {k: 2 for k in shuffled[n_train + n_dev:]}
        which = np.fromiter((part[k] for k in keys), dtype=np.int8, count=len(keys))
    out = Split(*(np.flatnonzero(which == i) for i in range(3)))
    if min(len(out.train), len(out.test)) == 0:
        raise UserError(f"{labels.name}: too few {by}s ({len(uniq)}) to split into train/dev/test; use more data")
    return out


def control_labels(words: np.ndarray, y: np.ndarray, train_idx: np.ndarray, classes: int, seed: int = 0) -> np.ndarray:
    """Control task (Hewitt & Liang 2019): every word type (case-folded, `probing.wordtypes`)
    gets one label drawn at random from the task's label distribution on the training split.
    Returns `[n]` control labels."""
    rng = np.random.default_rng(seed)
    dist = np.bincount(y[train_idx], minlength=classes).astype(float)
    dist /= dist.sum()
    types, inverse = np.unique(word_types(words), return_inverse=True)
    per_type = rng.choice(classes, size=len(types), p=dist)
    return per_type[inverse]


@dataclass
class InputTransform:
    """x -> (x - mean) @ proj. mean `[d]`, proj `[d, d']`, std `[d]` (per-neuron sd, for weights)."""
    mean: np.ndarray
    proj: np.ndarray
    std: np.ndarray

    def __call__(self, X: np.ndarray, mask: np.ndarray | None = None) -> torch.Tensor:
        """`mask [d]` (0/1) sets the masked neurons to their training mean (ablation) first."""
        x = torch.from_numpy(np.asarray(X, dtype=np.float32) - self.mean)
        if mask is not None:
            x = x * torch.as_tensor(mask, dtype=torch.float32)
        return x @ torch.from_numpy(self.proj)

    @classmethod
    def fit(cls, X: np.ndarray, kind: str = "zscore") -> InputTransform:
        X = np.asarray(X, dtype=np.float32)
        check_finite(X, "the training inputs")
        d = X.shape[1]
        if kind == "whiten" and len(X) <= d:
            log.warning("probe.transform=whiten with %d training rows for %d dimensions: the covariance is "
                        "rank-deficient and test accuracy suffers; use probe.transform=zscore", len(X), d)
        mean = X.mean(0) if kind != "none" else np.zeros(d, np.float32)
        std = X.std(0)
        std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        if kind == "none":
            proj = np.eye(d, dtype=np.float32)
        elif kind == "zscore":
            proj = np.diag(1.0 / std).astype(np.float32)
        elif kind == "whiten":
            xc = torch.from_numpy(X - mean)
            cov = (xc.T @ xc).double() / max(len(X) - 1, 1)
            ev, vecs = torch.linalg.eigh(cov)
            ev = ev.clamp(min=float(ev.max()) * 1e-6)
            proj = (vecs / ev.sqrt()).float().numpy()
        else:
            raise ValueError(f"unknown input transform {kind!r}")
        return cls(mean.astype(np.float32), np.ascontiguousarray(proj), std)


def check_finite(X: np.ndarray, what: str) -> None:
    """A clear error when `X [n, d]` holds NaN or inf (naming the first row and neuron)."""
    X = np.asarray(X)
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))
        r, c = (int(v) for v in bad[0]) if X.ndim == 2 else (int(bad[0][0]), 0)
        raise UserError(f"{what} hold {len(bad)} NaN/inf value(s) (first: row {r}, neuron {c}); "
                        "probes and rankings need finite activations: re-extract the store or drop those rows")


class _FullBatch(torch.utils.data.Dataset):
    """One item: the whole split (full-batch training without per-row collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i):
        return self.x, self.y


class ArrayDataModule(L.LightningDataModule):
    """Train/dev/test arrays `[n, d]` and labels `[n]`; full-batch when `batch_size` is None.
    The input transform is fitted on the training split once, of the kind `fit_transform` is
    given (`fit_probe` passes its `FitOptions.transform`)."""

    def __init__(self, X_train, y_train, X_dev=None, y_dev=None, X_test=None, y_test=None,
                 batch_size: int | None = None, seed: int = 0):
        super().__init__()
        self.arrays = {"train": (X_train, y_train), "dev": (X_dev, y_dev), "test": (X_test, y_test)}
        self.batch_size, self.seed = batch_size, seed
        self.transform: InputTransform | None = None
        self._cache: dict = {}

    def with_labels(self, y_train, y_dev=None, y_test=None) -> ArrayDataModule:
        """The same inputs (and fitted transform) with other labels, e.g. a control task."""
        self.setup()
        other = ArrayDataModule(self.arrays["train"][0], y_train, self.arrays["dev"][0], y_dev,
                                self.arrays["test"][0], y_test, self.batch_size, self.seed)
        other.transform = self.transform
        for part, y in (("train", y_train), ("dev", y_dev), ("test", y_test)):
            if part in self._cache and y is not None:
                other._cache[part] = (self._cache[part][0], torch.as_tensor(np.asarray(y), dtype=torch.long))
        return other

    def fit_transform(self, kind: str) -> InputTransform:
        """Fit the input transform on the training split, unless it already is (or was shared)."""
        if self.transform is None:
            X, y = self.arrays["train"]
            if X is None or len(X) == 0:
                raise UserError("the training split is empty: a probe needs training examples")
            if y is None or len(y) != len(X):
                raise UserError(f"the training split has {len(X)} rows but {0 if y is None else len(y)} labels")
            self.transform = InputTransform.fit(X, kind)
        return self.transform

    def setup(self, stage: str | None = None) -> None:
        """Lightning's hook: the transform must be fitted by now (`fit_transform`)."""
        if self.transform is None:
            raise RuntimeError("ArrayDataModule: call fit_transform(kind) before using the data")

    @property
    def dim(self) -> int:
        self.setup()
        return self.transform.proj.shape[1]

    def has(self, part: str) -> bool:
        X = self.arrays[part][0]
        return X is not None and len(X) > 0

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed inputs `[n, d']` and labels `[n]` of a split."""
        self.setup()
        if part not in self._cache:
            X, y = self.arrays[part]
            self._cache[part] = (self.transform(X), torch.as_tensor(np.asarray(y), dtype=torch.long))
        return self._cache[part]

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        x, y = self.tensors(part)
        if self.batch_size is None:
            return DataLoader(_FullBatch(x, y), batch_size=None)
        return DataLoader(TensorDataset(x, y), batch_size=self.batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.batch_size is not None)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class StoreDataModule(ArrayDataModule):
    """The rows of a label set from one layer of the activation store, split by `split`.
    Only those rows are read from the memory-mapped layer."""

    def __init__(self, store, layer: int, labels: LabelSet, split: Split, y: np.ndarray | None = None, **kw):
        y = labels.y if y is None else y
        X = np.asarray(store.layer(layer)[labels.rows], dtype=np.float32)
        check_finite(X, f"layer {layer} of the store {store.path} ({labels.name} rows)")
        parts = [(X[idx], y[idx]) for idx in (split.train, split.dev, split.test)]
        super().__init__(*parts[0], *parts[1], *parts[2], **kw)
        self.layer = layer
