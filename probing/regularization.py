"""Choosing a probe's L2 strength on held-out data (a warm-started regularisation path).

The grid is in scikit-learn's units, C (inverse strength, independent of the number of rows);
the probe's penalty `l2 * sum W^2` on the mean cross-entropy is the same objective with
`l2 = 1 / (2 C n_train)`. The path runs from the strongest penalty (smallest C) to the
weakest, each fit starting from the previous one's weights, and scores each C on held-out rows:

- the dev split when it has at least `min_dev` rows and train + dev at least `cv_below`
  (5,000 by default);
- otherwise k-fold cross-validation over train + dev pooled (concept probes of tens to
  hundreds of rows, and tag probes of a few thousand, where one dev split of a few hundred
  rows picks C by noise).

Two rules pick C from the held-out scores (`rule`):

- `accuracy` (the default): of the C whose held-out accuracy is within one standard error of
  the best one's, the one of lowest held-out cross-entropy (of equal losses, the stronger
  penalty). The standard error is that of the accuracy difference to the best C across the k
  held-out parts (the folds; in dev mode the dev rows dealt into k parts), paired: both C are
  scored on the same rows. So accuracy decides where it clearly prefers a C, and the smooth,
  proper cross-entropy settles what accuracy cannot tell apart (at small n, most of the grid's
  neighbours). The path stops once the accuracy has stayed below its best for `patience` grid
  points in a row while the loss rose past its own best. With fewer than `MIN_ROWS_ACCURACY`
  (300) held-out rows (train + dev in cross-validation) the `loss` rule decides instead: on
  tens of rows one row is points of accuracy, and the most penalised fits (C=0.001) can win on
  a few rows by margins so thin that the final fit's class balance undoes them (binary tag probes of 54 rows: 4
  points below the loss rule, tests/test_probe_quality.py).
- `loss` (this project's rule until 2026-12): the lowest held-out mean cross-entropy, of equal
  losses the stronger penalty; the path stops once the loss has risen `patience` times in a
  row past its best.

Cross-entropy alone punishes confident mistakes rather than counting errors, and accuracy alone
is noisy at small n (a few held-out rows more or less right move it). On MiniLM UPOS/XPOS
probes of 300-3,000 training words (EWT train, tested on EWT dev; 3 draws each) the test
accuracy of the chosen C was below the grid's best by 0.21 points on average (worst 0.68) with
cross-entropy, 0.22 (worst 0.85) with accuracy alone, 0.15 (worst 0.46) with this rule
(bench/RESULTS.md, "Choosing C").
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from probing.system import ProbeSystem

log = logging.getLogger(__name__)

CV_BELOW = 5000  # train + dev rows under which C is chosen by cross-validation even with a dev split
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
RULES = ("accuracy", "loss")
MIN_ROWS_ACCURACY = 300  # held-out rows under which the accuracy rule gives way to the loss rule


def l2_for(C: float, n_train: int) -> float:
    """The probe's `l2` that gives scikit-learn's `C` on `n_train` rows."""
    return 1.0 / (2.0 * C * max(n_train, 1))


@dataclass
class Selection:
    C: float
    l2: float
    how: str  # dev | cv<k>
    losses: dict[float, float] = field(default_factory=dict)  # C -> held-out mean cross-entropy
    state: dict | None = None  # the probe's weights at C on the training split (dev mode)
    accuracies: dict[float, float] = field(default_factory=dict)  # C -> held-out accuracy
    rule: str = "accuracy"
    steps: int = 0  # L-BFGS function evaluations of every fit along the path (all folds)
    part_accuracies: dict[float, list[float]] = field(default_factory=dict)  # C -> accuracy in each held-out part
    part_losses: dict[float, list[float]] = field(default_factory=dict)  # C -> mean cross-entropy in each part


def _held_out(system: ProbeSystem, x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor,
              k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(summed cross-entropy, `[k]` summed cross-entropy and `[k]` rows right in each group)
    of `system` on held-out rows `x`, `y` in `groups` (ids in [0, k))."""
    with torch.no_grad():
        logits = system.probe(x)
        w = system.class_weights if system.class_weights.numel() else None
        per_row = F.cross_entropy(logits, y, reduction="none")
        if w is not None:  # the weighted mean's terms, scaled to rows, so that parts pool by their row counts
            per_row = per_row * w[y] * (len(y) / w[y].sum().clamp(min=1e-12))
        group_loss = torch.zeros(k, dtype=per_row.dtype, device=x.device).index_add_(0, groups, per_row)
        right = torch.zeros(k, dtype=torch.long, device=x.device).index_add_(0, groups, (logits.argmax(1) == y).long())
        return float(per_row.sum()), group_loss.cpu().numpy(), right.cpu().numpy()


def _se(parts: dict[float, list[float]] | None, C: float, ref: float) -> float:
    """The standard error of the mean difference of a score between C and ref across held-out parts."""
    if not parts or len(parts[C]) < 2:
        return 0.0
    diff = np.asarray(parts[C]) - np.asarray(parts[ref])
    return float(diff.std(ddof=1) / np.sqrt(len(diff)))


def choose(losses: dict[float, float], accuracies: dict[float, float], rule: str = "accuracy",
           part_accuracies: dict[float, list[float]] | None = None) -> float:
    """The C that `rule` picks from held-out scores per C (see the module's docstring).
    `part_accuracies` (C -> accuracy in each of k held-out parts) gives the `accuracy` rule its
    standard errors; without them only equal best accuracies tie."""
    if rule == "loss":
        return min(losses, key=lambda C: (losses[C], C))
    if rule != "accuracy":
        raise ValueError(f"unknown C selection rule {rule!r}: use one of {RULES}")
    best = min(accuracies, key=lambda C: (-accuracies[C], losses[C], C))
    near = [C for C in accuracies if accuracies[C] >= accuracies[best] - _se(part_accuracies, C, best) - 1e-9]
    return min(near, key=lambda C: (losses[C], C))


class _Stop:
    """The path's early stop for `rule`: fed one grid point at a time, in ascending C."""

    def __init__(self, rule: str, patience: int | None):
        self.rule, self.patience = rule, patience
        self.best_loss, self.best_acc, self.worse = np.inf, -np.inf, 0

    def __call__(self, loss: float, acc: float) -> bool:
        loss_rose = loss > self.best_loss * (1 + 1e-4)  # a tie (the fit moved less than its tolerance) is not a rise
        acc_fell = acc < self.best_acc - 1e-9
        self.best_loss, self.best_acc = min(self.best_loss, loss), max(self.best_acc, acc)
        worse = loss_rose if self.rule == "loss" else (loss_rose and acc_fell)
        self.worse = self.worse + 1 if worse else 0
        return self.patience is not None and self.worse >= self.patience


def _path(make_system: Callable[[], ProbeSystem], parts: list[tuple], k: int, grid, patience: int | None,
          rule: str = "accuracy") -> tuple[Selection, dict]:
    """Fit along `grid` (ascending C), one warm-started probe per part
    `(x, y, x_out, y_out, groups_out)`, and score each C by the held-out loss and accuracy
    pooled over the parts (weighted by rows), and the accuracy in each of the `k` held-out
    groups. Stops early as `_Stop` says. Returns (a Selection without its choice, {C: the first
    part's weights})."""
    systems = [make_system() for _ in parts]
    size = sum(np.bincount(p[4].cpu().numpy(), minlength=k) for p in parts)
    n_out = int(size.sum())
    out = Selection(0.0, 0.0, "", rule=rule)
    states = {}
    stop = _Stop(rule, patience)
    for C in grid:
        total, part_loss, right = 0.0, np.zeros(k), np.zeros(k, dtype=np.int64)
        for system, (x, y, x_out, y_out, g_out) in zip(systems, parts):
            system.l2 = l2_for(C, len(x))
            system.run_lbfgs(x, y)
            loss, group_loss, hits = _held_out(system, x_out, y_out, g_out, k)
            total, part_loss, right = total + loss, part_loss + group_loss, right + hits
        out.losses[C], out.accuracies[C] = total / n_out, int(right.sum()) / n_out
        out.part_accuracies[C] = (right / np.maximum(size, 1)).tolist()
        out.part_losses[C] = (part_loss / np.maximum(size, 1)).tolist()
        states[C] = copy.deepcopy(systems[0].probe.state_dict())
        if stop(out.losses[C], out.accuracies[C]):
            break
    out.steps = sum(s.iterations for s in systems)
    return out, states
def folds_of(n: int, k: int, seed: int, y: torch.Tensor | None = None) -> np.ndarray:
    """`[n]` fold ids in [0, k): shuffled (seeded), and stratified by label when `y` is given
    (each class's rows dealt round the folds in turn, so every fold holds its share of each)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    if y is None:
        return perm % k
    labels = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)[perm]
    order = perm[np.argsort(labels, kind="stable")]  # shuffled within each class, classes one after another
    fold = np.empty(n, dtype=np.int64)
    fold[order] = (np.arange(n) + int(rng.integers(k))) % k
    return fold


def select_l2(make_system: Callable[[], ProbeSystem], x_train: torch.Tensor, y_train: torch.Tensor,
              x_dev: torch.Tensor | None, y_dev: torch.Tensor | None, grid=C_GRID, min_dev: int = 50,
              folds: int = 5, patience: int = 2, seed: int = 0, cv_below: int = CV_BELOW,
              rule: str = "accuracy", min_rows_accuracy: int = MIN_ROWS_ACCURACY) -> Selection:
    """Pick C from `grid` for a probe made by `make_system()` (a fresh `ProbeSystem`).
    Inputs are the transformed tensors `[n, d]` and labels `[n]` of each split. The `accuracy`
    rule falls back to `loss` when fewer than `min_rows_accuracy` rows are held out (the
    Selection's `rule` says which rule chose)."""
    if rule not in RULES:
        raise ValueError(f"unknown C selection rule {rule!r}: use one of {RULES}")
    grid = sorted(float(c) for c in grid)
    n = len(x_train)
    n_dev = 0 if x_dev is None else len(x_dev)
    dev_mode = n_dev >= min_dev and n + n_dev >= cv_below
    if rule == "accuracy" and (n_dev if dev_mode else n + n_dev) < min_rows_accuracy:
        rule = "loss"
    if dev_mode:
        groups = torch.as_tensor(folds_of(n_dev, folds, seed, y_dev), device=x_dev.device)
        sel, states = _path(make_system, [(x_train, y_train, x_dev, y_dev, groups)], folds, grid, patience, rule)
        sel.how, sel.C = "dev", choose(sel.losses, sel.accuracies, sel.rule, sel.part_accuracies)
        sel.l2, sel.state = l2_for(sel.C, n), states[sel.C]
        return sel
    x = torch.cat([x_train, x_dev]) if x_dev is not None and len(x_dev) else x_train
    y = torch.cat([y_train, y_dev]) if y_dev is not None and len(y_dev) else y_train
    k = max(2, min(folds, len(x) // 2))
    fold = torch.as_tensor(folds_of(len(x), k, seed, y), device=x.device)
    parts = [(x[fold != i], y[fold != i], x[fold == i], y[fold == i], fold[fold == i]) for i in range(k)]
    sel, _ = _path(make_system, parts, k, grid, patience, rule)
    sel.how, sel.C = f"cv{k}", choose(sel.losses, sel.accuracies, sel.rule, sel.part_accuracies)
    sel.l2 = l2_for(sel.C, n)
    return sel
