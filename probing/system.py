"""The training system: a `LightningModule` around a probe, adding cross-entropy and an
optional elastic-net penalty `l1 * sum|W| + l2 * sum W^2` over the probe's weights.

Two optimisers:
- `lbfgs` (default): full-batch L-BFGS with strong-Wolfe line search, run until the gradient
  or the change in loss falls under tolerance (convergence), in one training step.
- `adam`: mini-batch Adam (the paper's preset: batch 512, 10 epochs), with optional early
  stopping on the dev loss.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class ProbeSystem(L.LightningModule):
    def __init__(self, probe: nn.Module, optimizer: str = "lbfgs", lr: float = 1.0, l1: float = 0.0,
                 l2: float = 0.0, max_iter: int = 500, tol: float = 1e-6, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.probe = probe
        self.optimizer_name = optimizer
        self.lr, self.l1, self.l2 = lr, l1, l2
        self.max_iter, self.tol = max_iter, tol
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.empty(0))
        self.automatic_optimization = optimizer != "lbfgs"
        self.iterations = 0  # L-BFGS function evaluations
        self.converged = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.class_weights if self.class_weights.numel() else None
        loss = F.cross_entropy(self.probe(x), y, weight=w)
        for p in self.probe.penalized_weights():
            if self.l1:
                loss = loss + self.l1 * p.abs().sum()
            if self.l2:
                loss = loss + self.l2 * (p * p).sum()
        return loss

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.automatic_optimization:
            loss = self.loss(x, y)
            self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False)
            return loss
        opt = self.optimizers()
        self.run_lbfgs(x, y, getattr(opt, "optimizer", opt))
        with torch.no_grad():
            loss = self.loss(x, y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return None

    def run_lbfgs(self, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.LBFGS | None = None) -> None:
        """Full-batch L-BFGS on `x [n, d]`, `y [n]` from the current weights until convergence
        (or `max_iter` evaluations): Lightning's training step, and the regularisation path
        (`probing.regularization`) without a Trainer."""
        opt = opt or self._lbfgs()

        def closure():
            opt.zero_grad()
            loss = self.loss(x, y)
            loss.backward()
            self.iterations += 1
            return loss

        with torch.enable_grad():
            opt.step(closure)
        state = opt.state[opt._params[0]]
        self.converged = state.get("n_iter", 0) < self.max_iter

    def _lbfgs(self) -> torch.optim.LBFGS:
        return torch.optim.LBFGS(self.probe.parameters(), lr=self.lr, max_iter=self.max_iter, history_size=20,
                                 tolerance_grad=self.tol, tolerance_change=self.tol * 1e-3,
                                 line_search_fn="strong_wolfe")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        with torch.no_grad():
            logits = self.probe(x)
            loss = F.cross_entropy(logits, y)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        if self.optimizer_name == "lbfgs":
            return self._lbfgs()
        return torch.optim.Adam(self.probe.parameters(), lr=self.lr)
