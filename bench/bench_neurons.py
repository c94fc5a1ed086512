"""Neuron ranking: time per method over all layers of the default model, and the top-k
retraining curve against random-k (and bottom-k) on UPOS.

    .venv/bin/python bench/bench_neurons.py [--tokens 20000] [--methods probeless,probe_weights,iou,gaussian,random]

Data: the EWT train store of the default model, UPOS, a seeded sample of `--tokens` tokens,
60/20/20 by sentence; each method ranks the 384 neurons of each of the 7 layers on the
training part. The curve: the default probe retrained on the top-k / random-k / bottom-k
neurons of the overall ranking of the last layer, test accuracy.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
warnings.filterwarnings("ignore")
log = logging.getLogger("bench_neurons")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--methods", default="probeless,probe_weights,iou,gaussian,random")
    ap.add_argument("--ks", default="5,10,20,50,100,200")
    ap.add_argument("--curve-layer", type=int, default=6)
    args = ap.parse_args()
    from helpers import compose_cfg

    import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
    from concepts.core.config import validate
    from concepts.discovery.stage import open_store
    from neurons.evaluate import Data, retrain_curve
    from neurons.rankers import make_ranker
    from probing.config import TrainConfig, register_probing_configs
    from probing.data import split_examples
    from probing.fit import FitOptions
    from probing.labels import tag_labels
    register_probing_configs()
    cfg = validate(compose_cfg("train", ["extraction.progress=false"]), TrainConfig)
    store = open_store(cfg)
    ls = tag_labels(store.tokens(), "upos", 10, args.tokens, seed=0)
    split = split_examples(ls)
    methods = args.methods.split(",")
    times = {m: [] for m in methods}
    rankings = {}
    for layer in range(store.n_layers):
        X = np.asarray(store.layer(layer)[ls.rows], dtype=np.float32)
        for m in methods:
            t0 = time.perf_counter()
            r = make_ranker(m).rank(X[split.train], ls.y[split.train], ls.classes)
            times[m].append(time.perf_counter() - t0)
            if layer == args.curve_layer:
                rankings[m] = (r, X)
    log.info("%d tokens (%d train), %d layers x %d neurons", len(ls), len(split.train), store.n_layers, store.hidden_size)
    log.info("| method | seconds, all %d layers | seconds per layer |", store.n_layers)
    log.info("|---|---:|---:|")
    for m in methods:
        log.info("| %s | %.2f | %.2f |", m, sum(times[m]), np.mean(times[m]))
    ks = [int(k) for k in args.ks.split(",")]
    log.info("layer %d, UPOS, test accuracy of the probe retrained on k neurons:", args.curve_layer)
    log.info("| method | neurons | %s |", " | ".join(f"k={k}" for k in ks))
    log.info("|---|---|%s", "---:|" * len(ks))
    for m, (r, X) in rankings.items():
        data = Data(X[split.train], ls.y[split.train], X[split.test], ls.y[split.test], len(ls.classes))
        rows = retrain_curve(r, data, ks, FitOptions(), seed=0)
        for which in ("top", "random", "bottom"):
            if m == "random" and which != "top":
                continue
            accs = [next(x["accuracy"] for x in rows if x["k"] == k and x["neurons"] == which) for k in ks]
            log.info("| %s | %s | %s |", m, which, " | ".join(f"{a:.3f}" for a in accs))


if __name__ == "__main__":
    main()
