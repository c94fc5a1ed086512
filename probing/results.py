"""The record of one trained probe (one task at one layer), saved as JSON.

Flags (caveats shown next to the numbers):
- `type_split_control`: under `split=type` no test word type is seen in training, so the
  control task (a random label per type) is at chance and selectivity is inflated; compare
  with the lexical baseline instead, or use the sentence split for selectivity.
- `lexical`: the probe is no better than the word-type lookup (its accuracy is within the
  lookup's interval), so it may measure word identity only.
"""

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
    # 95% intervals: Wilson for accuracies, a paired bootstrap over test rows for selectivity
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    control_low: float | None = None
    control_high: float | None = None
    selectivity_low: float | None = None
    selectivity_high: float | None = None
    lexical_accuracy: float | None = None  # a word-type -> label lookup learned on train
    majority_accuracy: float | None = None  # always the most frequent training label
    l2: float | None = None  # the penalty trained with
    C: float | None = None  # ... in scikit-learn's units, when chosen on held-out data
    flags: list = field(default_factory=list)  # caveats a reader must see (e.g. type_split_control)
    control_seconds: float | None = None  # the control probe's fit (`seconds` is the task probe's, C chosen too)

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> ProbeResult:
        return cls(**json.loads(Path(path).read_text()))

    def row(self) -> dict:
        d = asdict(self)
        d.pop("per_class")
        d["flags"] = ";".join(self.flags)
        return d
