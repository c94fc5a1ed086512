"""Train a probe with Lightning and evaluate it: the one training path every probe uses
(tag probes, concept probes, control tasks, and the neuron rankers' probes)."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.environments import LightningEnvironment
from sklearn.metrics import f1_score

from concepts.core.errors import UserError
from probing.data import ArrayDataModule, InputTransform, check_finite
from probing.probe import make_probe
from probing.regularization import C_GRID, CV_BELOW, RULES, Selection, select_l2
from probing.system import ProbeSystem

log = logging.getLogger(__name__)

for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LBFGS.*")
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*val_dataloader.*")


@dataclass
class FitOptions:
    kind: str = "linear"  # linear | mlp
    hidden: int = 256
    optimizer: str = "lbfgs"  # lbfgs | adam
    lr: float = 1.0
    max_iter: int = 500  # lbfgs
    tol: float = 1e-4  # lbfgs: max |gradient| at convergence
    batch_size: int = 512  # adam
    max_epochs: int = 100  # adam
    patience: int = 3  # adam: early stopping on the dev loss; 0 = train all epochs
    l1: float = 0.0
    l2: float = 1e-5  # used as is when `select` is off (or for adam)
    select: bool = True  # lbfgs: choose l2 on held-out data from c_grid (probing.regularization)
    c_grid: tuple = C_GRID  # scikit-learn's C: l2 = 1 / (2 C n_train)
    select_rule: str = "accuracy"  # accuracy (within one SE of the best, the lowest cross-entropy) | loss (before 2026-12)
    cv_below: int = CV_BELOW  # train + dev rows under which C is chosen by k-fold cross-validation
    balanced: bool = False  # weight classes by inverse frequency
    device: str = "auto"
    transform: str = "zscore"  # of the inputs: zscore | whiten | none
    seed: int = 0


@dataclass
class FittedProbe:
    system: ProbeSystem
    transform: InputTransform
    classes: int
    seconds: float
    # L-BFGS: every function evaluation of the fit, those of the regularisation path that chose
    # C included (all its grid points and folds: `selection_steps`) plus the final fit's; Adam: epochs
    steps: int
    converged: bool | None  # the final fit's
    l2: float = 0.0  # the penalty trained with (chosen on held-out data when selected)
    selection: Selection | None = None
    selection_steps: int = 0  # of `steps`, the function evaluations spent choosing C (0 when not selected)

    @torch.no_grad()
    def logits(self, X: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """`[n, classes]` logits of raw inputs `X [n, d]`; `mask [d]` (0/1) sets the masked
        neurons to their training mean first (mean ablation; zeroing a z-scored neuron)."""
        self.system.eval()
        out = []
        for i in range(0, len(X), 65536):
            x = self.transform(X[i:i + 65536], mask).to(self.system.device)
            out.append(self.system.probe(x).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.classes), np.float32)

    def predict(self, X: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return self.logits(X, mask).argmax(1)

    def input_weights(self) -> np.ndarray:
        """`[classes, d]` the probe's weights on z-scored input neurons, whatever transform it
        was trained with (weights through the transform, times each neuron's sd)."""
        w = self.system.probe.input_weights().detach().cpu().numpy()  # [classes, d']
        return (w @ self.transform.proj.T) * self.transform.std


def _device(name: str) -> str:
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if name.startswith("cuda") else name


def check_inputs(dm: ArrayDataModule, classes: int) -> None:
    """Clear errors (`UserError`, one line) for inputs no probe can be trained on: an empty or
    one-row training split, one class in training, a split whose rows and labels differ in
    number or whose columns differ from training's, labels outside [0, classes), NaN or inf
    in any split."""
    what = {"train": "the training split", "dev": "the dev split", "test": "the test split"}
    X, y = dm.arrays["train"]
    if X is None or len(X) == 0:
        raise UserError("the training split is empty: a probe needs training examples")
    d = None
    for part in ("train", "dev", "test"):
        X, y = dm.arrays[part]
        if X is None or (part != "train" and len(X) == 0):
            continue
        X = np.asarray(X)
        if X.ndim != 2:
            raise UserError(f"{what[part]}'s inputs have shape {X.shape}: give a 2-d array [rows, neurons]")
        n_y = 0 if y is None else len(y)
        if n_y != len(X):
            raise UserError(f"{what[part]} has {len(X)} rows but {n_y} labels: give one label per row")
        if d is None:
            d = X.shape[1]
        elif X.shape[1] != d:
            raise UserError(f"{what[part]} has {X.shape[1]} columns but the training split has {d}: "
                            "every split needs the same neurons (the same layer and columns)")
        check_finite(X, "the training inputs" if part == "train" else f"the {part} split's inputs")
        y = np.asarray(y)
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
            raise UserError(f"{what[part]}'s labels are of type {y.dtype}: give class ids, ints in [0, {classes})")
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if len(bad):
            raise UserError(f"{what[part]} has {len(bad)} label(s) outside [0, {classes}) (first: {y[bad[0]].item()!r} "
                            f"at row {int(bad[0])}): labels must be class ids below the number of classes, {classes}")
    y = np.asarray(dm.arrays["train"][1])
    if len(y) < 2:
        raise UserError("the training split has 1 row: a probe needs at least 2 training rows, of 2 or more classes")
    present = np.unique(y)
    if len(present) < 2:
        raise UserError(f"the training split holds one class only (class id {present[0].item()!r}, {len(y)} rows): "
                        "a probe needs training examples of 2 or more classes")


def fit_probe(dm: ArrayDataModule, classes: int, opt: FitOptions, logger=None) -> FittedProbe:
    """Train a probe on the data module's training split (classes are ints in [0, classes));
    its dev split drives Adam's early stopping and is logged as `val_loss` / `val_acc`.
    Inputs are checked first (`check_inputs`: a `UserError` for each kind of bad input)."""
    t0 = time.perf_counter()
    check_inputs(dm, classes)
    if opt.select_rule not in RULES:
        raise UserError(f"select_rule={opt.select_rule!r}: use one of {', '.join(RULES)}")
    torch.manual_seed(opt.seed)
    dm.fit_transform(opt.transform)
    full = opt.optimizer == "lbfgs"
    dm.batch_size = None if full else opt.batch_size
    weights = None
    if opt.balanced:
        yt = torch.as_tensor(np.asarray(dm.arrays["train"][1]), dtype=torch.long)
        counts = torch.bincount(yt, minlength=classes).float()
        weights = torch.where(counts > 0, len(yt) / (classes * counts.clamp(min=1)), torch.zeros_like(counts))
    accelerator = _device(opt.device)

    def make_system(l2: float = opt.l2) -> ProbeSystem:
        torch.manual_seed(opt.seed)
        probe = make_probe(opt.kind, dm.dim, classes, opt.hidden)
        return ProbeSystem(probe, opt.optimizer, opt.lr, opt.l1, l2, opt.max_iter, opt.tol, weights)

    selection = None
    if full and opt.select:
        dev = "cuda" if accelerator == "gpu" else "cpu"
        x_tr, y_tr = (t.to(dev) for t in dm.tensors("train"))
        x_dev, y_dev = (t.to(dev) for t in dm.tensors("dev")) if dm.has("dev") else (None, None)
        selection = select_l2(lambda: make_system().to(dev), x_tr, y_tr, x_dev, y_dev, opt.c_grid, seed=opt.seed,
                              cv_below=opt.cv_below, rule=opt.select_rule)
        log.debug("l2 chosen by %s (%s): C=%g (l2=%.3g), %d function evaluations", selection.how, selection.rule,
                  selection.C, selection.l2, selection.steps)
    system = make_system(selection.l2 if selection else opt.l2)
    if selection is not None and selection.state is not None:  # warm start: already at the optimum
        system.probe.load_state_dict(selection.state)
    has_dev = dm.has("dev")
    callbacks = []
    if not full and opt.patience and has_dev:
        callbacks.append(L.pytorch.callbacks.EarlyStopping("val_loss", patience=opt.patience, mode="min"))
    with warnings.catch_warnings():
        # probes are single-process fits (LightningEnvironment below): `srun` on the PATH, or a SLURM
        # job around us, is not a request for multi-process training
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
        trainer, steps = _fit(system, dm, opt, accelerator, full, has_dev, callbacks, logger)
    chosen = selection.steps if selection is not None else 0
    return FittedProbe(system, dm.transform, classes, time.perf_counter() - t0, steps + chosen,
                       system.converged if full else None, system.l2, selection, chosen)


def _fit(system, dm, opt: FitOptions, accelerator: str, full: bool, has_dev: bool, callbacks: list, logger):
    """One Lightning fit of `system`; returns (trainer, steps: L-BFGS iterations or epochs)."""
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, max_epochs=1 if full else opt.max_epochs, logger=logger or False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
        num_sanity_val_steps=0, log_every_n_steps=1, limit_val_batches=1.0 if has_dev else 0,
        # one process, whatever the launcher: inside a SLURM job (or where `srun` exists) Lightning
        # would otherwise detect SLURM, warn, and take the job's task settings for multi-process training
        plugins=[LightningEnvironment()])
    trainer.fit(system, train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader() if has_dev else None)
    return trainer, system.iterations if full else trainer.current_epoch


@dataclass
class Metrics:
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict]  # class name -> {f1, support}

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "per_class": self.per_class}


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> Metrics:
    if len(y_true) == 0:
        raise UserError("the test split is empty: there is nothing to score (use more data or a larger test share)")
    if len(y_pred) != len(y_true):
        raise UserError(f"{len(y_pred)} predictions for {len(y_true)} test labels")
    labels = sorted(set(np.asarray(y_true).tolist()))
    f1s = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0) if labels else []
    support = np.bincount(np.asarray(y_true, dtype=int), minlength=len(class_names))
    per = {class_names[c]: {"f1": float(f), "support": int(support[c])} for c, f in zip(labels, f1s)}
    return Metrics(float(np.mean(y_true == y_pred)), float(np.mean(f1s)), per)
