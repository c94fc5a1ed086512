"""float16 stores: what rounding the vectors to float16 (extraction.store_dtype=float16) changes.

On a float32 store and its discovery sample: exact Ward at K on the float32 rows and on the same
rows rounded to float16 (ARI and NMI between the two K-cuts, and the share of concepts aligned with UPOS at θ=0.9),
and a UPOS logistic-regression probe (scikit-learn, the same split) on both. Disk per million
words per layer is hidden x 2 bytes (float16) or x 4 (float32).

    .venv/bin/python bench/bench_store_dtype.py --store <activations> --concepts <concepts folder> --layers 0 3 6
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--concepts", required=True, help="a concepts folder made from the store (its sample.npy)")
    ap.add_argument("--layers", type=int, nargs="+", default=[0, 3, 6])
    ap.add_argument("--k", type=int, default=600)
    ap.add_argument("--probe-rows", type=int, default=40000)
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.preprocessing import StandardScaler

    from concepts.discovery.alignment import align
    from concepts.discovery.clustering import cluster
    from concepts.discovery.config import ClusteringConfig
    from concepts.extraction.store import ActivationStore

    store = ActivationStore(args.store)
    rows = np.load(Path(args.concepts) / "sample.npy")
    tokens = store.tokens()
    rng = np.random.default_rng(0)
    probe_rows = np.sort(rng.choice(len(tokens), size=min(args.probe_rows, len(tokens)), replace=False))
    y = tokens["upos"].to_numpy()[probe_rows]
    train = rng.random(len(probe_rows)) < 0.8
    print(f"{store.path}: {len(rows)} sampled rows, hidden {store.hidden_size}, K={args.k}; "
          f"UPOS probe on {len(probe_rows)} random tokens (80/20 split)\n")
    print("| layer | Ward ARI fp16 vs fp32 | NMI | UPOS-aligned concepts fp32 / fp16 | max abs rounding | probe acc fp32 | probe acc fp16 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for layer in args.layers:
        arr = store.layer(layer)
        x32 = np.asarray(arr[rows], dtype=np.float32)
        x16 = x32.astype(np.float16).astype(np.float32)
        t = time.perf_counter()
        a = cluster(x32, args.k, ClusteringConfig(method="ward"))
        b = cluster(x16, args.k, ClusteringConfig(method="ward"))
        secs = time.perf_counter() - t
        ari = adjusted_rand_score(a.labels, b.labels)
        nmi = normalized_mutual_info_score(a.labels, b.labels)
        upos = [(t,) for t in tokens["upos"].to_numpy()[rows]]
        shares = [align(lab, upos, 0.9, name="upos")[1].concept_share for lab in (a.labels, b.labels)]
        accs = []
        for cast in (np.float32, np.float16):
            X = np.asarray(arr[probe_rows], dtype=np.float32).astype(cast).astype(np.float32)
            sc = StandardScaler().fit(X[train])
            clf = LogisticRegression(max_iter=300, C=1.0).fit(sc.transform(X[train]), y[train])
            accs.append(clf.score(sc.transform(X[~train]), y[~train]))
        print(f"| {layer} | {ari:.4f} | {nmi:.4f} | {shares[0]:.3f} / {shares[1]:.3f} | {np.abs(x32 - x16).max():.2g} | "
              f"{accs[0]:.4f} | {accs[1]:.4f} |"
              f"  <!-- Ward x2 {secs:.0f} s -->")
    d = store.hidden_size
    print(f"\ndisk per million words per layer at {d}-d: float32 {d * 4 / 1e3:.2f} GB, float16 {d * 2 / 1e3:.2f} GB; "
          f"768-d: 3.07 GB / 1.54 GB")


if __name__ == "__main__":
    main()
