"""The record of one trained probe (one task at one layer), saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from concepts.artifacts import atomic_write_json


@dataclass
class ProbeResult:
    model: str
    layer: int
    source: str  # tag | concepts | concept_binary
    task: str  # upos, concepts-L3-top20, concept-L3-C17, ...
    classes: int
    n_train: int
    n_dev: int
    n_test: int
    accuracy: float  # test
    macro_f1: float
    dev_accuracy: float | None
    control_accuracy: float | None  # test accuracy of the control task
    selectivity: float | None  # accuracy - control_accuracy
    seconds: float
    steps: int
    converged: bool | None
    fingerprint: str
    per_class: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> ProbeResult:
        return cls(**json.loads(Path(path).read_text()))

    def row(self) -> dict:
        d = asdict(self)
        d.pop("per_class")
        return d
