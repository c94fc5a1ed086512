"""Choosing a probe's L2 strength on held-out data (a warm-started regularisation path).

The grid is in scikit-learn's units, C (inverse strength, independent of the number of rows);
the probe's penalty `l2 * sum W^2` on the mean cross-entropy is the same objective with
`l2 = 1 / (2 C n_train)`. The path runs from the strongest penalty (smallest C) to the
weakest, each fit starting from the previous one's weights, and scores each C by the mean
cross-entropy on held-out rows (a proper score: no ties, unlike accuracy on a few rows; of equal losses the stronger
penalty wins):

- the dev split when it has at least `min_dev` rows and train + dev at least `cv_below`
  (2,000); the path stops once the dev loss has risen `patience` times in a row past its best;
- otherwise k-fold cross-validation over train + dev pooled (concept probes of tens to
  hundreds of rows, where a dev split of a few rows would pick C by noise), with the same
  early stop on the pooled held-out loss.
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

CV_BELOW = 2000  # train + dev rows under which C is chosen by cross-validation even with a dev split
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


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


def _held_out_loss(system: ProbeSystem, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        w = system.class_weights if system.class_weights.numel() else None
        return float(F.cross_entropy(system.probe(x), y, weight=w))


def _path(make_system: Callable[[], ProbeSystem], parts: list[tuple], grid, patience: int | None) -> tuple[dict, dict | None]:
    """Fit along `grid` (ascending C), one warm-started probe per part `(x, y, x_out, y_out)`,
    and score each C by the held-out loss pooled over the parts (weighted by rows). Stops once
    the pooled loss has risen `patience` times in a row past its best. Returns
    ({C: loss}, the first part's weights at the best C)."""
    systems = [make_system() for _ in parts]
    n_out = sum(len(p[2]) for p in parts)
    losses, best, best_state, worse = {}, np.inf, None, 0
    for C in grid:
        total = 0.0
        for system, (x, y, x_out, y_out) in zip(systems, parts):
            system.l2 = l2_for(C, len(x))
            system.run_lbfgs(x, y)
            total += _held_out_loss(system, x_out, y_out) * len(x_out)
        losses[C] = loss = total / n_out
        if loss < best - 1e-9:
            best, best_state, worse = loss, copy.deepcopy(systems[0].probe.state_dict()), 0
        elif loss > best * (1 + 1e-4):  # a tie (the fit moved less than its tolerance) is not a rise
            worse += 1
            if patience is not None and worse >= patience:
                break
    return losses, best_state


def select_l2(make_system: Callable[[], ProbeSystem], x_train: torch.Tensor, y_train: torch.Tensor,
              x_dev: torch.Tensor | None, y_dev: torch.Tensor | None, grid=C_GRID, min_dev: int = 50,
              folds: int = 5, patience: int = 2, seed: int = 0, cv_below: int = CV_BELOW) -> Selection:
    """Pick C from `grid` for a probe made by `make_system()` (a fresh `ProbeSystem`).
    Inputs are the transformed tensors `[n, d]` and labels `[n]` of each split."""
    grid = sorted(float(c) for c in grid)
    n = len(x_train)
    n_dev = 0 if x_dev is None else len(x_dev)
    if n_dev >= min_dev and n + n_dev >= cv_below:
        losses, state = _path(make_system, [(x_train, y_train, x_dev, y_dev)], grid, patience)
        C = min(losses, key=losses.get)
        return Selection(C, l2_for(C, n), "dev", losses, state)
    x = torch.cat([x_train, x_dev]) if x_dev is not None and len(x_dev) else x_train
    y = torch.cat([y_train, y_dev]) if y_dev is not None and len(y_dev) else y_train
    k = max(2, min(folds, len(x) // 2))
    fold = torch.as_tensor(np.random.default_rng(seed).permutation(len(x)) % k, device=x.device)
    parts = [(x[fold != i], y[fold != i], x[fold == i], y[fold == i]) for i in range(k)]
    losses, _ = _path(make_system, parts, grid, patience)
    C = min(losses, key=losses.get)
    return Selection(C, l2_for(C, n), f"cv{k}", losses, None)
