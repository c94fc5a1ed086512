"""Probe networks: plain `nn.Module`s mapping word vectors `[batch, d]` to logits `[batch, classes]`."""

from __future__ import annotations

import torch
from torch import nn


class LinearProbe(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def penalized_weights(self) -> list[torch.Tensor]:
        """The weights the elastic-net penalty applies to (biases are not penalised)."""
        return [self.linear.weight]

    def input_weights(self) -> torch.Tensor:
        """`[classes, d]` weights on the input neurons (used to rank neurons)."""
        return self.linear.weight


class MLPProbe(nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def penalized_weights(self) -> list[torch.Tensor]:
        return [self.net[0].weight, self.net[3].weight]

    def input_weights(self) -> torch.Tensor:
        """`[classes, d]`: the product of the layers' weights (a linear summary of the input's effect)."""
        return self.net[3].weight @ self.net[0].weight


def make_probe(kind: str, dim: int, classes: int, hidden: int = 256) -> nn.Module:
    if kind == "linear":
        return LinearProbe(dim, classes)
    if kind == "mlp":
        return MLPProbe(dim, classes, hidden)
    raise ValueError(f"unknown probe kind {kind!r}")
