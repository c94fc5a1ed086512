"""One large exact-Ward run with progress: the time of the first (symmetric) pass, the merges
done each minute, the total and the peak RSS; the K=600 labels go next to bench_cluster's.

Same data and call as `bench_cluster.py` (its `load`, `ward_linkage` with default settings):

    .venv/bin/python bench/bench_ward_scale.py --n 250000 --dim 768
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_cluster import LABELS, K, default_store, load  # noqa: E402

from concepts.discovery.clustering import ward as W  # noqa: E402

log = logging.getLogger("bench_ward_scale")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=250000)
    ap.add_argument("--dim", type=int, default=768, choices=[384, 768])
    ap.add_argument("--store", default=None, help="activation store folder (default: the EWT all-splits store)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = a.store or default_store()
    X = load(a.n, a.dim, store)
    t0 = time.perf_counter()
    first_pass = W._State.first_pass

    def timed_first_pass(state, *args):
        done = first_pass(state, *args)
        log.info("first pass: %.1f s (rows searched again in float64: %d, exhaustively: %d)",
                 time.perf_counter() - t0, state.fallbacks, state.exhaustive)
        return done

    W._State.first_pass = timed_first_pass
    last = [0.0]

    def progress(merges: int) -> None:
        t = time.perf_counter() - t0
        if t - last[0] > 60:
            last[0] = t
            log.info("%.0f s: %d of %d merges", t, merges, a.n - 1)

    Z = W.ward_linkage(X, progress=progress)
    took = time.perf_counter() - t0
    LABELS.mkdir(exist_ok=True)
    np.save(LABELS / f"ward-{a.dim}-{a.n}.npy", W.cut_tree(Z, K))
    log.info("n=%d, d=%d: %.1f s, peak RSS %.2f GB", a.n, a.dim, took,
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


if __name__ == "__main__":
    main()
