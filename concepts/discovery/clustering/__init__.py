"""Clustering methods behind one interface: `cluster(X [n, d], k, cfg) -> Clustering`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from concepts.discovery.clustering.ward import cut_tree, first_seen_labels, ward_linkage

log = logging.getLogger(__name__)

METHODS = ("ward", "kmeans_ward", "kmeans", "scipy_ward")


@dataclass
class Clustering:
    """labels `[n]` in 0..k-1; `linkage` `[m - 1, 4]` SciPy format over `m` leaves (the points,
    or for kmeans_ward the micro-clusters, with `assign` `[n]` mapping points to leaves); no
    tree for plain k-means."""

    labels: np.ndarray
    linkage: np.ndarray | None = None
    assign: np.ndarray | None = None
    seconds: float = 0.0  # the clustering's own time (0 when read back from disk)

    def cut(self, k: int) -> np.ndarray:
        """Labels for another K from the saved tree (no re-clustering)."""
        if self.linkage is None:
            raise ValueError("this clustering has no merge tree (k-means); re-run it for another K")
        leaves = cut_tree(self.linkage, k)
        return leaves if self.assign is None else leaves[self.assign]


def _device(name: str) -> str:
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def _micro_clusters(X: np.ndarray, m: int, iters: int, seed: int) -> np.ndarray:
    """faiss k-means with `m` centroids: the micro-cluster of each row of `X` `[n, d]`, `[n]`."""
    import faiss

    X32 = np.ascontiguousarray(X, dtype=np.float32)
    # a few points per centroid is the point of micro-clusters: no subsampling, no warning about it
    km = faiss.Kmeans(X32.shape[1], m, niter=iters, seed=seed, max_points_per_centroid=len(X32),
                      min_points_per_centroid=1)
    km.train(X32)
    _, assign = km.index.search(X32, 1)
    return assign[:, 0].astype(np.int64)


def cluster(X: np.ndarray, k: int, cfg) -> Clustering:
    """Cluster the rows of `X` `[n, d]` into `k` concepts with `cfg.method`."""
    n = len(X)
    if k > n:
        raise ValueError(f"cannot make K={k} clusters from {n} points")
    if cfg.method == "ward":
        Z = ward_linkage(X, block=cfg.block, device=_device(cfg.device), chunk=cfg.chunk)
        return Clustering(cut_tree(Z, k), Z)
    if cfg.method == "scipy_ward":
        from scipy.cluster.hierarchy import linkage

        Z = linkage(np.asarray(X, dtype=np.float64), method="ward")
        return Clustering(cut_tree(Z, k), Z)
    if cfg.method == "kmeans":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=1, random_state=cfg.seed).fit(X)
        return Clustering(first_seen_labels(km.labels_))
    if cfg.method == "kmeans_ward":
        m = cfg.micro_clusters or min(max(10 * k, 5000), n // 4)
        m = max(min(m, n), k)
        assign = _micro_clusters(X, m, cfg.kmeans_iters, cfg.seed)
        used = np.unique(assign)  # micro-clusters that kept no point are dropped
        remap = np.full(m, -1)
        remap[used] = np.arange(len(used))
        assign = remap[assign]
        counts = np.bincount(assign, minlength=len(used)).astype(np.float64)
        sums = torch.zeros((len(used), X.shape[1]), dtype=torch.float64)
        sums.index_add_(0, torch.from_numpy(assign), torch.from_numpy(np.asarray(X, dtype=np.float64)))
        centroids = sums.numpy() / counts[:, None]  # exact means of the points each micro-cluster holds
        if len(used) < k:
            raise ValueError(f"k-means left {len(used)} non-empty micro-clusters, fewer than K={k}")
        Z = ward_linkage(centroids, sizes=counts, block=cfg.block, device=_device(cfg.device), chunk=cfg.chunk)
        res = Clustering(np.empty(0), Z, assign)
        res.labels = first_seen_labels(res.cut(k))
        return res
    raise ValueError(f"unknown clustering method {cfg.method!r}")


__all__ = ["METHODS", "Clustering", "cluster", "cut_tree", "ward_linkage"]
