"""Typed config of `python -m neurons.rank`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from concepts.core.errors import UserError
from neurons.rankers import DEFAULTS
from probing.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class RankingConfig:
    """`ranking.*`. The defaults are the rankers' own (`neurons.rankers.DEFAULTS`), so the
    library and the command line rank alike. probe_weights trains the run's probe (`probe.*`,
    the probe probing trains: `neurons.rank.ranker_for`), not a probe of its own."""
    method: str = "probeless"  # probeless | probeless_ovr | probe_weights | iou | gaussian | random
    standardize: bool = DEFAULTS["standardize"]  # rank z-scored activations (a wide uninformative neuron cannot lead); false = raw
    quantile: float | None = DEFAULTS["quantile"]  # iou: top-activation quantile; null = as many as the class has tokens
    both_tails: bool = DEFAULTS["both_tails"]  # iou: the bottom tail counts too
    select: int = DEFAULTS["select"]  # gaussian: neurons chosen greedily
    seed: int = DEFAULTS["seed"]  # random, gaussian (probe_weights: the probe's seed is neurons.seed)
    polish: float | None = DEFAULTS["polish"]  # probe_weights: L-BFGS goes on at the probe's C to this max|gradient|
    # removed: probe_weights' own Adam probe. Still read so that old configs load; a value is
    # ignored, with a warning (the probe is the run's `probe=` config: probe.c_grid, probe.l1, ...)
    l1: float | None = None
    l2: float | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        from neurons.rankers import RANKERS

        if self.method not in RANKERS:
            raise UserError(f"ranking.method={self.method!r}: use one of {', '.join(RANKERS)}")
        old = [f"ranking.{k}={v}" for k, v in (("l1", self.l1), ("l2", self.l2), ("epochs", self.epochs)) if v is not None]
        if old:
            log.warning("%s: no longer used (ignored): probe_weights ranks the weights of the run's probe, the one "
                        "probing trains; set its options with probe.* (probe.c_grid, probe.l1, probe=...) and "
                        "drop ranking.l1/l2/epochs", ", ".join(old))
        if self.quantile is not None and not 0 < self.quantile < 1:
            raise UserError(f"ranking.quantile={self.quantile} must be in (0, 1) or null")
        if self.select < 1:
            raise UserError(f"ranking.select={self.select} must be at least 1")
        if self.polish is not None and self.polish <= 0:
            raise UserError(f"ranking.polish={self.polish} must be > 0 (a max |gradient|) or null (the probe as trained)")

    def params(self) -> dict:
        """The ranker's options of `method` (probe_weights' probe options come from the run's
        `probe` config: `neurons.rank.ranker_for`)."""
        own = {"probeless": {}, "probeless_ovr": {}, "random": {"seed": self.seed}, "probe_weights": {"polish": self.polish},
               "iou": {"quantile": self.quantile, "both_tails": self.both_tails},
               "gaussian": {"select": self.select, "seed": self.seed}}[self.method]
        return {**own, "standardize": self.standardize}


@dataclass
class NeuronsConfig:
    concat: bool = False  # rank the listed layers' neurons together (names L<layer>:<index>)
    max_tokens: int | None = 50000  # random cap on examples (seeded)
    ks: list[Any] = field(default_factory=lambda: [5, 10, 20, 50, 100, "50%"])  # counts or "N%"
    retrain: bool = True  # probes retrained on top-k / random-k / bottom-k neurons
    ablation: bool = True  # top-k / random-k neurons of a trained probe ablated ...
    ablate: str = "mean"  # ... set to their training mean (mean) or to zero (zero)
    super_sub: bool = True  # the paper's super/sub-concept overlap (needs concept records)
    super_tag_set: str = "upos"  # super concepts = concepts aligned with one tag of this set
    top: int = 10  # neurons compared in the super/sub analysis
    top_words: int = 15  # top activating words listed per neuron
    outlier_spread: float = 3.0  # an outlier neuron: sd >= this x the layer's median sd ...
    outlier_offset: float = 5.0  # ... or mean this many median sds from the layer's median mean
    plot: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top < 1 or self.top_words < 0:
            raise UserError("neurons.top must be >= 1 and neurons.top_words >= 0")
        if self.outlier_spread <= 1 or self.outlier_offset <= 0:
            raise UserError("neurons.outlier_spread must be > 1 and neurons.outlier_offset > 0")


@dataclass
class RankConfig(TrainConfig):
    ranking: RankingConfig = field(default_factory=RankingConfig)
    neurons: NeuronsConfig = field(default_factory=NeuronsConfig)


def register_neuron_configs() -> None:
    ConfigStore.instance().store(name="rank_schema", node=RankConfig)


@dataclass
class PipelineSection:
    report: str | None = None  # the report folder; null = <workspace>/report/<model>-<corpus>
    tag: str = "upos"  # the gold tag set probed (with its control task) and used to rank neurons
    concept_probes: bool = True  # a multi-class probe per layer over its largest labelled concepts
    concept_top: int = 20
    score_labels: bool = False  # label scoring (needs an LLM annotator)
    neurons: bool = True
    wandb: bool = True  # probes and the report logged to W&B (offline unless said otherwise)
    check_network: bool = True  # fail up front when a stage needs the Hub or an API key that is missing
    # full: a store of every word, so gold-tag probes and rankings see every token of the corpus;
    # sampled: only discovery's sampled tokens are extracted (the paper's scale: ~6% of the words),
    # and every probe and ranking runs on them
    store: str = "full"

    def __post_init__(self) -> None:
        if self.store not in ("full", "sampled"):
            raise UserError(f"pipeline.store={self.store!r}: use full (a store of every word) or sampled (discovery's "
                            "sampled tokens only, for large corpora)")


@dataclass
class PipelineConfig(RankConfig):
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    preset: str | None = None  # the experiment preset's name, for the report


def register_pipeline_configs() -> None:
    ConfigStore.instance().store(name="pipeline_schema", node=PipelineConfig)
