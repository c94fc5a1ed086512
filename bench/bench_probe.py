"""Probe training time and accuracy vs scikit-learn, and a full UPOS sweep with control tasks.

    .venv/bin/python bench/bench_probe.py [--layers 0,1,2,3,4,5,6] [--tags upos,xpos] [--sweep]

Same data for both (the EWT train store of the default model, 60/20/20 split by sentence,
the same examples): this project's Lightning probe (full-batch L-BFGS on whitened inputs,
tol 1e-4, L2 1e-5) against scikit-learn's LogisticRegression (lbfgs, run to convergence:
max_iter 10000, its default tol 1e-4) on z-scored inputs with the same L2 strength
(C = 1 / (2 * l2 * n_train)). Times include the input transform; loading is shared.
`--sweep` then times `probing.train` over all layers on UPOS with control tasks, from scratch.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
warnings.filterwarnings("ignore")

log = logging.getLogger("bench_probe")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="0,1,2,3,4,5,6")
    ap.add_argument("--tags", default="upos,xpos")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()
    from helpers import compose_cfg
    from sklearn.linear_model import LogisticRegression

    import probing.train as train_mod
    from concepts.core.config import validate
    from concepts.discovery.stage import open_store
    from probing.config import TrainConfig
    from probing.data import StoreDataModule, split_examples
    from probing.fit import FitOptions, evaluate, fit_probe
    from probing.labels import tag_labels

    cfg = validate(compose_cfg("train", ["extraction.progress=false"]), TrainConfig)
    store = open_store(cfg)
    tokens = store.tokens()
    rows = []
    for tag in args.tags.split(","):
        ls = tag_labels(tokens, tag, 10)
        split = split_examples(ls)
        for layer in [int(x) for x in args.layers.split(",")]:
            dm = StoreDataModule(store, layer, ls, split)
            (Xtr, ytr), (Xte, yte) = dm.arrays["train"], dm.arrays["test"]
            fit = fit_probe(dm, len(ls.classes), FitOptions())
            acc = evaluate(yte, fit.predict(Xte), ls.classes).accuracy
            row = {"tag": tag, "layer": layer, "classes": len(ls.classes), "n_train": len(ytr),
                   "ours_s": fit.seconds, "ours_acc": acc, "ours_steps": fit.steps, "ours_converged": fit.converged}
            if not args.skip_sklearn:
                t0 = time.perf_counter()
                mean, std = Xtr.mean(0), Xtr.std(0) + 1e-8
                sk = LogisticRegression(C=1 / (2 * 1e-5 * len(ytr)), max_iter=10000).fit((Xtr - mean) / std, ytr)
                row.update(sk_s=time.perf_counter() - t0, sk_acc=float(sk.score((Xte - mean) / std, yte)),
                           sk_iter=int(np.max(sk.n_iter_)))
            rows.append(row)
            log.info("%s", row)
    log.info("| tag | layer | classes | train | ours s | ours acc | sklearn s | sklearn acc | speed-up | acc diff |")
    log.info("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        sk = (f"{r['sk_s']:.1f} | {r['sk_acc']:.4f} | {r['sk_s'] / r['ours_s']:.1f}x | {100 * (r['ours_acc'] - r['sk_acc']):+.2f}"
              if "sk_s" in r else "- | - | - | -")
        log.info("| %s | %d | %d | %d | %.1f | %.4f | %s |", r["tag"], r["layer"], r["classes"], r["n_train"],
                 r["ours_s"], r["ours_acc"], sk)
    if args.sweep:
        sweep_cfg = compose_cfg("train", ["extraction.progress=false", "layer=all", "labels=upos", "probing.control=true"])
        out, _ = train_mod.probing_path(validate(sweep_cfg, TrainConfig), store, None)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        res = train_mod.run(sweep_cfg)
        log.info("full sweep, %d layers, UPOS + control tasks: %.1f s", len(res.results), time.perf_counter() - t0)
        log.info("%s", res.summary[["layer", "accuracy", "control_accuracy", "selectivity", "seconds"]].to_string(index=False))


if __name__ == "__main__":
    main()
