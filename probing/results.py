"""The record of one trained probe (one task at one layer), saved as JSON.

Flags (caveats shown next to the numbers):
- `type_split_control`: under `split=type` no test word type is seen in training, so the
  control task (a random label per type) is at chance and selectivity is inflated; compare
  with the lexical baseline instead, or use the sentence split for selectivity.
- `below_lexical`: the probe is no better than the word lookup (the lookup's accuracy reaches
  the probe's 95% interval), so it may measure word identity only.
- `below_majority`: accuracy below always answering the most frequent training label.
- `few_positives`: a class has fewer than `probing.min_test_class` test tokens (multi-class
  probes; a binary probe with so few is skipped instead).
- `not_selective`: the selectivity interval reaches 0 (the probe does no better on the task
  than on its control task).

A skipped task is a result too, with `skipped` its reason and no numbers, so that the summary
says why a concept has none and a re-run does not try again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from concepts.core.artifacts import atomic_write_json

INTERVALS = {
    "sentence": "95% percentile bootstrap over test sentences (2,000 resamples by default; selectivity paired): "
                "the noise of the test sample only, not of the split or the fit (probing.resplits measures those)",
    "token": "95% Wilson intervals treating test tokens as independent (selectivity: a paired bootstrap over "
             "tokens): too narrow when tokens of one sentence agree; the noise of the test sample only",
}


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
    balanced_accuracy: float | None = None  # the mean of the classes' recalls
    balanced_low: float | None = None
    balanced_high: float | None = None
    positive_f1: float | None = None  # binary concept probes: F1 of the concept's class
    test_per_class: dict = field(default_factory=dict)  # class name -> test tokens
    interval: str = ""  # what the intervals cover (INTERVALS)
    skipped: str | None = None  # why the task was not probed (then the numbers are None)
    resplits: int = 0  # re-splits and re-fits besides this one (probing.resplits)
    resplit_accuracy_sd: float | None = None  # SD of accuracy over this split and the re-splits
    resplit_selectivity_sd: float | None = None
    resplit_accuracy_min: float | None = None
    resplit_accuracy_max: float | None = None

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> ProbeResult:
        return cls(**json.loads(Path(path).read_text()))

    def row(self) -> dict:
        d = asdict(self)
        d.pop("per_class")
        d.pop("test_per_class")
        d["flags"] = ";".join(self.flags)
        return d

    @classmethod
    def skip(cls, model: str, layer: int, source: str, task: str, classes: int, fingerprint: str, reason: str,
             n_train: int = 0, n_dev: int = 0, n_test: int = 0, test_per_class: dict | None = None) -> ProbeResult:
        """The record of a task not probed, and why."""
        return cls(model, layer, source, task, classes, n_train, n_dev, n_test, None, None, None, None, None, 0.0, 0,
                   None, fingerprint, test_per_class=test_per_class or {}, skipped=reason)
