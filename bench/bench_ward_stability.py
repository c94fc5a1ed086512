"""How far can an approximation of Ward agree with exact Ward at K=600 on these vectors?

Two measurements on the same rows as `bench_cluster.py` (its `load`):
- exact Ward on the vectors plus Gaussian noise of a given sd, against exact Ward on the vectors:
  the agreement that a change far below any approximation's error already costs;
- `kmeans_ward` with several micro-cluster counts m: its time and agreement with exact Ward.

The exact labels are read from `/tmp/bench-cluster/ward-<dim>-<n>.npy` (written by
`bench_cluster.py` or `bench_ward_scale.py`) or computed.

    .venv/bin/python bench/bench_ward_stability.py --n 50000 --dim 768 --noise 1e-5 1e-4 --micro 6000 12500
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_cluster import LABELS, K, default_store, load  # noqa: E402
from results import append_results, this_command  # noqa: E402

log = logging.getLogger("bench_ward_stability")


def exact(X: np.ndarray) -> np.ndarray:
    from concepts.discovery.clustering.ward import cut_tree, ward_linkage

    return cut_tree(ward_linkage(X), K)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=768, choices=[384, 768])
    ap.add_argument("--noise", type=float, nargs="*", default=[1e-5, 1e-4])
    ap.add_argument("--micro", type=int, nargs="*", default=[6000, 12500])
    ap.add_argument("--store", default=None, help="activation store folder (default: the EWT all-splits store)")
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from sklearn.metrics import adjusted_rand_score as ari
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from concepts.discovery.clustering import cluster
    from concepts.discovery.config import ClusteringConfig

    store = a.store or default_store()
    X = load(a.n, a.dim, store)
    saved = LABELS / f"ward-{a.dim}-{a.n}.npy"
    if saved.exists():
        ref = np.load(saved)
    else:
        t0 = time.perf_counter()
        ref = exact(X)
        log.info("exact Ward: %.1f s", time.perf_counter() - t0)
    sd = float(X.std())
    rows = []
    for s in a.noise:
        noisy = X + np.random.default_rng(1).normal(0, s, X.shape).astype(np.float32)
        t0 = time.perf_counter()
        lab = exact(noisy)
        rows.append((f"exact Ward, noise sd {s:g} ({100 * s / sd:.3g}% of the data's sd)", time.perf_counter() - t0, lab))
        log.info("%s: %.1f s, ARI %.4f", rows[-1][0], rows[-1][1], ari(ref, lab))
    for m in a.micro:
        t0 = time.perf_counter()
        lab = cluster(X, K, ClusteringConfig(method="kmeans_ward", micro_clusters=m)).labels
        rows.append((f"kmeans_ward, m = {m:,} micro-clusters", time.perf_counter() - t0, lab))
        log.info("%s: %.1f s, ARI %.4f", rows[-1][0], rows[-1][1], ari(ref, lab))
    lines = [f"n = {a.n:,}, {a.dim}-d, K = {K}; agreement with exact Ward on the unperturbed vectors.", "",
             "| run | seconds | ARI | NMI |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {t:.1f} | {ari(ref, lab):.4f} | {nmi(ref, lab):.4f} |" for name, t, lab in rows]
    text = "\n".join(lines)
    log.info("\n%s", text)
    if a.write:
        append_results("### Ward stability and the approximate method", this_command(), text)


if __name__ == "__main__":
    main()
