"""The discovery stage's config: `clustering.*`, `discovery.*`, and the `discover` app's schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from concepts.core.config import pick_layers
from concepts.core.errors import UserError
from concepts.extraction.config import ExtractConfig, SamplingConfig


@dataclass
class ClusteringConfig:
    method: str = "ward"  # ward | kmeans_ward | kmeans | scipy_ward
    micro_clusters: int = 0  # kmeans_ward: k-means centroids before Ward; 0 = min(max(10 K, 5000), n / 4)
    kmeans_iters: int = 20  # kmeans_ward: Lloyd iterations of the micro-cluster k-means (faiss)
    block: int = 2048  # ward: query rows per matrix product
    chunk: int = 2048  # ward: columns per matrix product (and first-pass tile size)
    device: str = "auto"  # ward: torch device for the products
    seed: int = 0

    def __post_init__(self) -> None:
        from concepts.discovery.clustering import METHODS

        if self.method not in METHODS:
            raise UserError(f"clustering.method={self.method!r}: use one of {', '.join(METHODS)}")
        if self.block < 1 or self.chunk < 1 or self.micro_clusters < 0 or self.kmeans_iters < 1:
            raise UserError("clustering.block, clustering.chunk and clustering.kmeans_iters must be >= 1 "
                            "and clustering.micro_clusters >= 0")

@dataclass
class DiscoveryConfig:
    layers: Any = "all"  # all, a layer, or a list of layers
    k: int = 600  # concepts per layer (the paper's K)
    theta: float = 0.9  # alignment threshold
    tag_sets: list[str] = field(default_factory=lambda: [
        "upos", "xpos", "deprel", "feats", "wordnet", "suffix", "casing", "is_number", "first_word"])
    plot: bool = True
    explorer: bool = True  # write the HTML concept explorer
    store: str | None = None  # an existing activation store folder; null = extract (or reuse) for this config
    extract: str = "sampled"  # with no store: sampled = extract only the sampled tokens (unless a full store exists); all = every word

    def __post_init__(self) -> None:
        if self.extract not in ("sampled", "all"):
            raise UserError(f"discovery.extract={self.extract!r}: use sampled (only the tokens clustered) or all (every word)")
        if self.k < 2:
            raise UserError(f"discovery.k={self.k} must be at least 2")
        if not 0 < self.theta <= 1:
            raise UserError(f"discovery.theta={self.theta} must be in (0, 1]")
        if not (self.layers == "all" or isinstance(self.layers, int) or isinstance(self.layers, (list, tuple))):
            raise UserError(f"discovery.layers={self.layers!r}: use all, a layer number or a list")

    def layer_list(self, have: int | list[int]) -> list[int]:
        """The layers to use, of `have` (a store's layers, or how many it has)."""
        return pick_layers("discovery.layers: layer {}", self.layers, have)

@dataclass
class DiscoverConfig(ExtractConfig):
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)


ConfigStore.instance().store(name="discover_schema", node=DiscoverConfig)
