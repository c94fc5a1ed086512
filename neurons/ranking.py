"""The result every neuron ranker returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from concepts.core.artifacts import atomic_save_npy, atomic_write_json
from concepts.core.errors import UserError


@dataclass
class Ranking:
    """Neurons ordered by salience, per class and overall.

    scores `[classes, d]`: salience of each neuron for each class (higher = more salient);
    overall `[d]`: one salience per neuron; neurons `[d]`: names ("L3:117" = layer 3, index 117).
    """
    method: str
    classes: list[str]
    neurons: list[str]
    scores: np.ndarray
    overall: np.ndarray
    meta: dict = field(default_factory=dict)  # model, store fingerprint, layers, label source

    @property
    def dim(self) -> int:
        return len(self.neurons)

    def order(self, cls: str | int | None = None) -> np.ndarray:
        """Neuron indices, most salient first, overall (None) or for one class (name or index)."""
        s = self.overall if cls is None else self.scores[cls if isinstance(cls, (int, np.integer)) else self.classes.index(cls)]
        return np.argsort(-s, kind="stable")

    def top(self, k: int, cls: str | int | None = None) -> np.ndarray:
        if not 0 < k <= self.dim:
            raise UserError(f"k={k} must be between 1 and the {self.dim} neurons ranked")
        return self.order(cls)[:k]

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        atomic_save_npy(folder / "scores.npy", self.scores.astype(np.float32))
        atomic_save_npy(folder / "overall.npy", self.overall.astype(np.float32))
        atomic_write_json(folder / "ranking.json", {"method": self.method, "classes": self.classes,
                                                    "neurons": self.neurons, "meta": self.meta,
                                                    "top_overall": [self.neurons[i] for i in self.order()[:100]]})

    @classmethod
    def load(cls, folder: Path, expect: dict | None = None) -> Ranking:
        """Read a saved ranking; `expect` must match its meta, else a clear error. Keys: any meta
        key ("store": fingerprint, "model", "task", ...), "layers" (a list) or "layer" (one layer)."""
        folder = Path(folder)
        if not (folder / "ranking.json").exists():
            raise UserError(f"{folder} holds no ranking (ranking.json); run neurons.rank first")
        d = json.loads((folder / "ranking.json").read_text())
        for key, value in (expect or {}).items():
            have = d["meta"].get(key)
            if key == "layer":
                key, value, have = "layers", [int(value)], d["meta"].get("layers")
            elif key == "layers":
                value = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            if have != value:
                raise UserError(f"the ranking in {folder} was made for {key}={have!r}, not {value!r} "
                                "(another model, corpus or layer); rank again for this one")
        return cls(d["method"], d["classes"], d["neurons"], np.load(folder / "scores.npy", allow_pickle=False),
                   np.load(folder / "overall.npy", allow_pickle=False), d["meta"])


def neuron_names(layers: list[int], dim: int) -> list[str]:
    return [f"L{layer}:{i}" for layer in layers for i in range(dim)]


def rankings_table(rankings: dict, top: int = 50) -> pd.DataFrame:
    """unit, rank, neuron, overall salience: the first `top` neurons of each unit."""
    rows = []
    for unit, r in sorted(rankings.items()):
        for rank, i in enumerate(r.order()[:top], start=1):
            rows.append({"unit": unit, "rank": rank, "neuron": r.neurons[i], "salience": float(r.overall[i])})
    return pd.DataFrame(rows, columns=["unit", "rank", "neuron", "salience"])
