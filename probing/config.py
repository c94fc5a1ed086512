"""Typed config of `python -m probing.train` (the concept stages' schema plus probing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from concepts.annotation.config import AnnotateConfig
from concepts.core.config import pick_layers
from concepts.core.errors import UserError
from probing.regularization import C_GRID


@dataclass
class LabelsConfig:
    source: str = "tag"  # tag | concepts | concept_binary
    tag: str = "upos"  # tag: a token-table column (upos, xpos, deprel, ...)
    concepts: str | None = None  # concepts folder; null = discover (and annotate) for this config
    concept_layer: int | None = None  # concepts of this layer; null = the probed layer
    top: int = 20  # the largest concepts ...
    require_label: bool = True  # ... that have a usable label
    negatives: float = 1.0  # concept_binary: negatives per positive (tokens of the layer's other concepts) ...
    min_rows: int = 0  # ... and at least this many rows in all (more negatives for small concepts; 0 = balanced)
    positives: str = "members"  # a concept's tokens: members (clustered) | nearest (+ tokens nearest its centroid)
    max_positives: int | None = 2000  # nearest: at most this many tokens per concept (members first; seeded)
    max_tokens: int | None = None  # tag: random cap on examples (seeded)

    def __post_init__(self) -> None:
        if self.source not in ("tag", "concepts", "concept_binary"):
            raise UserError(f"labels.source={self.source!r}: use tag, concepts or concept_binary")
        if self.top < 1:
            raise UserError(f"labels.top={self.top} must be at least 1")
        if self.negatives <= 0 or self.min_rows < 0:
            raise UserError(f"labels.negatives={self.negatives} must be > 0 and labels.min_rows={self.min_rows} >= 0")
        if self.positives not in ("members", "nearest"):
            raise UserError(f"labels.positives={self.positives!r}: use members (the clustered tokens) or nearest "
                            "(also every token whose nearest concept centroid is the concept)")
        if self.max_positives is not None and self.max_positives < 1:
            raise UserError(f"labels.max_positives={self.max_positives} must be at least 1 (or null: no cap)")


@dataclass
class SplitConfig:
    by: str = "sentence"  # sentence | type (test words unseen in training)
    train: float = 0.6
    dev: float = 0.2
    seed: int = 0
    stratify: bool = True  # every part gets its share of each label's sentences (or types)

    def __post_init__(self) -> None:
        if self.by not in ("sentence", "type"):
            raise UserError(f"split.by={self.by!r}: use sentence or type")
        if not (0 < self.train < 1 and 0 <= self.dev < 1 and self.train + self.dev < 1):
            raise UserError(f"split.train={self.train} split.dev={self.dev}: need 0 < train, train + dev < 1")


@dataclass
class ProbeConfig:
    kind: str = "linear"  # linear | mlp
    hidden: int = 256  # mlp
    optimizer: str = "lbfgs"  # lbfgs (full batch, to convergence) | adam (mini-batch)
    lr: float = 1.0
    max_iter: int = 500  # lbfgs function evaluations
    tol: float = 1e-4  # lbfgs: max |gradient| at convergence
    batch_size: int = 512  # adam
    max_epochs: int = 100  # adam
    patience: int = 3  # adam: early stopping on dev loss; 0 = run max_epochs
    l1: float = 0.0  # elastic net: l1 * sum|W| + l2 * sum W^2
    l2: float = 1e-5  # used when select is false (and by adam)
    select: bool = True  # lbfgs: choose l2 on the dev split (cross-validation when it is small) from c_grid
    c_grid: list[float] = field(default_factory=lambda: list(C_GRID))  # scikit-learn's C = 1 / (2 l2 n_train)
    balanced: bool = False  # class weights by inverse frequency
    device: str = "auto"
    transform: str = "zscore"  # inputs: zscore (any n) | whiten (fewer L-BFGS steps; poor when n_train <= d) | none

    def __post_init__(self) -> None:
        if self.transform not in ("whiten", "zscore", "none"):
            raise UserError(f"probe.transform={self.transform!r}: use whiten, zscore or none")
        if self.kind not in ("linear", "mlp"):
            raise UserError(f"probe.kind={self.kind!r}: use linear or mlp")
        if self.optimizer not in ("lbfgs", "adam"):
            raise UserError(f"probe.optimizer={self.optimizer!r}: use lbfgs or adam")
        if self.l1 < 0 or self.l2 < 0 or self.lr <= 0:
            raise UserError("probe.l1 and probe.l2 must be >= 0 and probe.lr > 0")
        if self.select and (not self.c_grid or min(self.c_grid) <= 0):
            raise UserError(f"probe.c_grid={list(self.c_grid)}: give one or more positive values of C")


@dataclass
class LoggerConfig:
    kind: str = "none"  # none | csv | wandb
    project: str = "latent-concepts"  # wandb
    group: str | None = None  # wandb; null = the sweep folder (multirun) or the task
    mode: str | None = None  # wandb: null = $WANDB_MODE, else offline
    entity: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("none", "csv", "wandb"):
            raise UserError(f"logger.kind={self.kind!r}: use none, csv or wandb (logger=none|csv|wandb)")


@dataclass
class ProbingConfig:
    min_examples: int = 10  # per class
    min_test: int = 20  # a probe whose test split has fewer rows is skipped (its reason in the summary)
    min_test_class: int = 20  # a binary probe is skipped unless test holds this many of each class (positives too)
    control: bool = True  # also train the control task and report selectivity
    interval: str = "sentence"  # 95% intervals: sentence (bootstrap over test sentences) | token (Wilson; tokens as independent)
    n_boot: int = 2000  # bootstrap resamples
    resplits: int = 0  # also re-split and re-fit this many times (split seeds seed+1...) and report the spread
    plot: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.interval not in ("sentence", "token"):
            raise UserError(f"probing.interval={self.interval!r}: use sentence (resample whole test sentences) or "
                            "token (Wilson, tokens as independent)")
        if self.min_test < 1 or self.min_test_class < 1 or self.min_examples < 1:
            raise UserError("probing.min_test, probing.min_test_class and probing.min_examples must be at least 1")
        if self.resplits < 0 or self.n_boot < 100:
            raise UserError(f"probing.resplits={self.resplits} must be >= 0 and probing.n_boot={self.n_boot} >= 100")


@dataclass
class TrainConfig(AnnotateConfig):
    layer: Any = "all"  # a layer, a list, or all
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    probing: ProbingConfig = field(default_factory=ProbingConfig)

    def layer_list(self, have: int | list[int]) -> list[int]:
        """The layers to use, of `have` (a store's layers, or how many it has)."""
        return pick_layers("layer={}", self.layer, have)


def register_probing_configs() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
