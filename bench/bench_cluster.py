"""Clustering benchmark: time and peak memory per layer-sized input for each method, and the
agreement (ARI/NMI at K) of the approximate method with exact Ward.

Data: real activations of the default model on UD English EWT (all splits, the store made by
`concepts.extract corpus.splits=[train,dev,test]`), layer 6 (384-d); for 768-d, layers 5 and 6
side by side. Each method runs in a child process (its own peak RSS); methods whose memory
would not fit, or whose time would exceed --max-seconds by extrapolation, are skipped.

    .venv/bin/python bench/bench_cluster.py --sizes 10000 25000 50000 --dims 384 --write
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
K = 600
LABELS = Path("/tmp/bench-cluster")  # K=600 labels of every run, `<method>-<dim>-<n>.npy`


def default_store() -> str:
    """The store of all EWT splits (`concepts.extract "corpus.splits=[train,dev,test]"
    paths.workspace=workspace/ws_all`), the data of every clustering benchmark."""
    return str(next(REPO.glob("workspace/ws_all/minilm/ewt-*/activations")))


def load(n: int, dim: int, store: str) -> np.ndarray:
    from concepts.extraction.store import ActivationStore

    s = ActivationStore(store)
    rows = np.sort(np.random.default_rng(0).choice(len(s.layer(6)), size=n, replace=False))
    X = s.layer(6)[rows]
    if dim == 768:
        X = np.concatenate([s.layer(5)[rows], X], axis=1)
    return np.ascontiguousarray(X, dtype=np.float32)


def child(method: str, n: int, dim: int, store: str, out: str) -> dict:
    X = load(n, dim, store)
    t0 = time.perf_counter()
    if method == "ward":
        from concepts.discovery.clustering.ward import cut_tree, ward_linkage

        labels = cut_tree(ward_linkage(X), K)
    elif method == "kmeans_ward":
        from concepts.discovery.clustering import cluster
        from concepts.discovery.config import ClusteringConfig

        labels = cluster(X, K, ClusteringConfig(method="kmeans_ward")).labels
    elif method == "sklearn":
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=K, linkage="ward").fit_predict(X)
    elif method == "fastcluster":
        import fastcluster
        from scipy.cluster.hierarchy import fcluster

        labels = fcluster(fastcluster.linkage_vector(X.astype(np.float64), method="ward"), K, "maxclust")
    else:
        raise SystemExit(f"unknown method {method}")
    took = time.perf_counter() - t0
    np.save(out, np.asarray(labels))
    return {"seconds": took, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 25000, 50000])
    ap.add_argument("--dims", type=int, nargs="+", default=[384])
    ap.add_argument("--methods", nargs="+", default=["ward", "kmeans_ward", "sklearn", "fastcluster"])
    ap.add_argument("--store", default=None, help="activation store folder (default: the EWT all-splits store)")
    ap.add_argument("--max-seconds", type=float, default=1200)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", nargs="*")
    a = ap.parse_args()
    if a.child:
        method, n, dim, store, out = a.child
        print(json.dumps(child(method, int(n), int(dim), store, out)))
        return
    store = a.store or default_store()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    LABELS.mkdir(exist_ok=True)
    rows, last = [], {}
    for dim in a.dims:
        for n in a.sizes:
            labels = {}
            for m in a.methods:
                prev = last.get((m, dim))
                if m == "sklearn" and 4 * n * n * 1.5 > 20e9:
                    rows.append((m, dim, n, "skipped: needs O(n²) memory (> 20 GB)", "", ""))
                    continue
                if prev and prev[1] * (n / prev[0]) ** 2 > a.max_seconds:
                    rows.append((m, dim, n, f"skipped: ~{prev[1] * (n / prev[0]) ** 2:,.0f} s extrapolated", "", ""))
                    continue
                out = LABELS / f"{m}-{dim}-{n}.npy"
                r = subprocess.run([sys.executable, __file__, "--child", m, str(n), str(dim), store, str(out)],
                                   capture_output=True, text=True, cwd=REPO)
                if r.returncode != 0:
                    rows.append((m, dim, n, "failed: " + (r.stderr.strip().splitlines() or ["killed"])[-1][:80], "", ""))
                    continue
                res = json.loads(r.stdout.strip().splitlines()[-1])
                labels[m] = np.load(out)
                last[(m, dim)] = (n, res["seconds"])
                rows.append((m, dim, n, f"{res['seconds']:.1f}", f"{res['peak_rss_gb']:.2f}", ""))
                print(rows[-1], flush=True)
            for m, lab in labels.items():
                if m != "ward" and "ward" in labels:
                    agree = (f"ARI {adjusted_rand_score(labels['ward'], lab):.4f}, "
                             f"NMI {normalized_mutual_info_score(labels['ward'], lab):.4f}")
                    rows = [(r[0], r[1], r[2], r[3], r[4], agree) if (r[0], r[1], r[2]) == (m, dim, n) else r for r in rows]
    lines = [f"K={K}; data: {store} (layer 6; 768-d = layers 5 and 6 side by side); 2 CPU cores.", "",
             "| method | dim | n | seconds | peak RSS GB | agreement with exact Ward at K |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {m} | {d} | {n:,} | {s} | {g} | {agr} |" for m, d, n, s, g, agr in rows]
    text = "\n".join(lines)
    print(text)
    if a.write:
        from results import append_results, this_command

        append_results("## Clustering", this_command(), text)


if __name__ == "__main__":
    main()
