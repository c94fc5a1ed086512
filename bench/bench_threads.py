"""Threads under load: exact Ward (the discovery step) with one torch thread and with two, alone
and beside a second busy process, interleaved (issue 15: `runtime.threads`).

Data: a layer of an activation store (default: the demo's, MiniLM on EWT train+dev, layer 6), N
sampled rows. The busy process is a pure-Python loop on one core, like a second job.

    .venv/bin/python bench/bench_threads.py --store <activations folder> --rows 10000 --reps 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def ward_seconds(X: np.ndarray, threads: int) -> float:
    from concepts.core.runtime import set_threads
    from concepts.discovery.clustering import cluster
    from concepts.discovery.config import ClusteringConfig

    set_threads(threads)
    t = time.perf_counter()
    cluster(X, 600, ClusteringConfig(method="ward"))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=None)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    from concepts.extraction.store import ActivationStore

    store = args.store or str(next(REPO.glob("workspace/minilm/ewt-*/activations")))
    layer = ActivationStore(store).layer(args.layer)
    rows = np.sort(np.random.default_rng(0).choice(len(layer), size=args.rows, replace=False))
    X = np.asarray(layer[rows], dtype=np.float32)
    results: dict = {}
    for rep in range(args.reps):
        for busy in (False, True):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                time.sleep(0.5 if busy else 0)
                for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):  # interleaved, order alternating
                    results.setdefault((busy, threads), []).append(ward_seconds(X, threads))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    print(f"exact Ward, {X.shape[0]} x {X.shape[1]} (layer {args.layer} of {store}), K=600, {args.reps} runs each\n")
    print("| second busy process | 1 thread (s) | 2 threads (s) | 2 threads / 1 thread |")
    print("|---|---:|---:|---:|")
    for busy in (False, True):
        one, two = results[(busy, 1)], results[(busy, 2)]
        fmt = lambda v: ", ".join(f"{x:.1f}" for x in v)  # noqa: E731
        print(f"| {'yes' if busy else 'no'} | {fmt(one)} | {fmt(two)} | {np.median(two) / np.median(one):.2f} |")


if __name__ == "__main__":
    main()
