"""Choosing the probe's C: the rule before 2026-12 (held-out cross-entropy), the current one
(held-out accuracy, cross-entropy breaking ties), and scikit-learn tuned for accuracy, side by side.

    .venv/bin/python bench/bench_c_selection.py --heldout-store DIR [--tasks upos,xpos]
        [--layers 0,3,6] [--ns 300,1000,3000,20000] [--seeds 5,5,3,1] [--cache FILE,...] [--write]

Data: MiniLM on UD English EWT. The store of the demo (`make demo`: EWT train + dev) gives the
training rows; its `sentences.jsonl` says which sentence is of which split.
- `--phase heldout` (the default): training and dev rows drawn from the 40% of EWT train
  sentences that development never touched; the test set is the EWT *test* split, a store of
  its own (`python -m concepts.extract corpus.splits=[test] paths.workspace=DIR`), every word
  whose tag is a class.
- `--phase dev` (what the rule was developed on): rows from the other 60% of EWT train
  sentences, tested on EWT dev.
For each task (UPOS, XPOS: tags seen 10+ times in the store), layer, n_train and seed: n_train
training words and n_train / 3 dev words drawn at random from the pool (the 60/20 shares of
`probing.train`), the same rows for every method:
- sklearn CV: `LogisticRegressionCV(Cs=C_GRID, cv=5, scoring="accuracy")` on train + dev, its
  C refitted on train (the rows the probe's final fit sees); sklearn best C: the best test
  accuracy of `LogisticRegression(C)` on train over the grid (an oracle);
- old: `fit_probe` with the selection of commit 8ce6750 (probing/regularization.py as it was:
  cross-entropy, 5-fold CV below 2,000 train + dev rows, else the dev split);
- new: `fit_probe(FitOptions())`, the default.
All on z-scored inputs (statistics of the training rows), one thread each (the machine is
shared); seconds are per fit, selection included. Accuracy is the mean over seeds.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from results import append_results, this_command  # noqa: E402

warnings.filterwarnings("ignore")
log = logging.getLogger("bench_c_selection")
OLD_COMMIT = "8ce6750"  # the last commit with the cross-entropy rule
REPO = Path(__file__).resolve().parent.parent


def old_regularization() -> types.ModuleType:
    """probing/regularization.py as of OLD_COMMIT, loaded as a module of its own."""
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:probing/regularization.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("old_regularization")
    sys.modules[mod.__name__] = mod  # for its dataclasses
    exec(compile(src, "old_regularization.py", "exec"), mod.__dict__)
    return mod


def fit_ours(Xtr, ytr, Xdv, ydv, Xte, yte, classes: int, old: types.ModuleType | None) -> tuple[float, float, float, int]:
    """(test accuracy, seconds, C, L-BFGS evaluations) of `fit_probe`; `old`: with the old selection."""
    import probing.fit as fit_mod
    from probing.data import ArrayDataModule
    from probing.regularization import Selection

    real = fit_mod.select_l2
    if old is not None:
        def select_old(make_system, x, y, xd, yd, grid, seed=0, **_):
            s = old.select_l2(make_system, x, y, xd, yd, grid, seed=seed)
            return Selection(s.C, s.l2, s.how, s.losses, s.state, {}, "loss", 0)
        fit_mod.select_l2 = select_old
    try:
        fit = fit_mod.fit_probe(ArrayDataModule(Xtr, ytr, Xdv, ydv), classes, fit_mod.FitOptions())
    finally:
        fit_mod.select_l2 = real
    return float(np.mean(fit.predict(Xte) == yte)), fit.seconds, fit.selection.C, fit.steps


def fit_sklearn(Xtr, ytr, Xdv, ydv, Xte, yte) -> dict:
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    from probing.regularization import C_GRID

    mean, sd = Xtr.mean(0), Xtr.std(0)
    sd = np.where(sd > 1e-8, sd, 1)
    z = lambda X: (X - mean) / sd  # noqa: E731
    t0 = time.perf_counter()
    cv = LogisticRegressionCV(Cs=list(C_GRID), cv=5, scoring="accuracy", max_iter=2000)
    cv.fit(z(np.vstack([Xtr, Xdv])), np.concatenate([ytr, ydv]))
    C_cv = float(np.atleast_1d(cv.C_)[0])
    seconds = time.perf_counter() - t0
    per_C = {}
    lr = LogisticRegression(max_iter=2000, warm_start=True)
    for C in C_GRID:  # one warm-started path on train: the refit at C_cv is one of its points
        lr.set_params(C=C)
        if C == C_cv:
            t0 = time.perf_counter()
        lr.fit(z(Xtr), ytr)
        if C == C_cv:
            seconds += time.perf_counter() - t0
        per_C[C] = float(lr.score(z(Xte), yte))
    return {"cv": per_C[C_cv], "C_cv": C_cv, "best": max(per_C.values()), "C_best": max(per_C, key=per_C.get),
            "seconds": seconds}


def sentence_splits(store_dir: Path) -> np.ndarray:
    """`[n_sentences]` the corpus split of each sentence of a store (from its sentences.jsonl)."""
    with open(store_dir / "sentences.jsonl") as fh:
        return np.array([json.loads(line)["split"] for line in fh])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=None, help="the demo's store (EWT train + dev)")
    ap.add_argument("--heldout-store", default=None, help="a store of EWT test alone (for --phase heldout)")
    ap.add_argument("--phase", default="heldout", choices=["heldout", "dev"])
    ap.add_argument("--tasks", default="upos,xpos")
    ap.add_argument("--layers", default="0,3,6")
    ap.add_argument("--ns", default="300,1000,3000,20000")
    ap.add_argument("--seeds", default="5,5,3,1", help="draws of the rows per n_train (one number: for every n)")
    ap.add_argument("--cache", default=None, help="JSON files of finished cells (the first is written): to resume, "
                    "or to gather runs done in parallel")
    ap.add_argument("--seed-from", type=int, default=0, help="fit draws from this seed on (to split a run)")
    ap.add_argument("--cached-only", action="store_true", help="fit nothing: the table of the cells in --cache")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch

    from concepts.extraction.store import ActivationStore

    torch.set_num_threads(1)
    store_dir = Path(args.store or sorted(glob.glob("/work/demo_ws/minilm/ewt-*/activations") +
                                          glob.glob("workspace/minilm/ewt-*/activations"))[0])
    store = ActivationStore(store_dir)
    tokens = store.tokens()
    split_of = sentence_splits(store_dir)[tokens["sentence"].to_numpy()]
    train_sents = np.unique(tokens["sentence"].to_numpy()[split_of == "train"])
    perm = np.random.default_rng(123).permutation(train_sents)
    tune = np.isin(tokens["sentence"].to_numpy(), perm[: int(0.6 * len(perm))])
    if args.phase == "dev":
        pool_mask, test_store, test_mask = tune, store, split_of == "dev"
    else:
        if not args.heldout_store:
            ap.error("--phase heldout needs --heldout-store (a store of EWT test)")
        test_store = ActivationStore(args.heldout_store)
        pool_mask, test_mask = (split_of == "train") & ~tune, np.ones(len(test_store.tokens()), bool)
    caches = [Path(f) for f in args.cache.split(",")] if args.cache else []
    cache = {k: v for f in caches if f.exists() for k, v in json.loads(f.read_text()).items()}
    ns = [int(v) for v in args.ns.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    seeds = dict(zip(ns, seeds if len(seeds) == len(ns) else seeds[:1] * len(ns)))
    old = old_regularization()
    data = {}
    for task in args.tasks.split(","):
        vals = tokens[task].astype(str).to_numpy()
        uniq, counts = np.unique(vals[(vals != "_") & (vals != "")], return_counts=True)
        classes = list(uniq[counts >= 10])
        code = {c: i for i, c in enumerate(classes)}
        y_all = np.array([code.get(v, -1) for v in vals])
        y_test_all = np.array([code.get(v, -1) for v in test_store.tokens()[task].astype(str).to_numpy()])
        test = np.flatnonzero(test_mask & (y_test_all >= 0))
        data[task] = (classes, y_all, np.flatnonzero(pool_mask & (y_all >= 0)), test, y_test_all[test])
    layers = [int(v) for v in args.layers.split(",")]
    settings = [(task, layer, n) for task in data for layer in layers for n in ns]
    for seed in range(args.seed_from, 0 if args.cached_only else max(seeds.values())):  # seed-major: every setting gets its draws in turn
        for task, layer, n in settings:
            key = f"{args.phase}/{task}/{layer}/{n}/{seed}"
            if seed >= seeds[n] or key in cache:
                continue
            classes, y_all, pool, test, y_test = data[task]
            X_layer = store.layer(layer)
            rng = np.random.default_rng(1000 * seed + n)
            draw = rng.choice(pool, n + n // 3, replace=False)
            tr, dv = np.sort(draw[:n]), np.sort(draw[n:])
            parts = (np.asarray(X_layer[tr], np.float32), y_all[tr], np.asarray(X_layer[dv], np.float32), y_all[dv],
                     np.asarray(test_store.layer(layer)[test], dtype=np.float32), y_test)
            sk = fit_sklearn(*parts)
            o_acc, o_s, o_C, o_steps = fit_ours(*parts, len(classes), old)
            n_acc, n_s, n_C, n_steps = fit_ours(*parts, len(classes), None)
            cache[key] = {**{f"sk_{k}": v for k, v in sk.items()}, "old": o_acc, "old_s": o_s, "old_C": o_C,
                          "new": n_acc, "new_s": n_s, "new_C": n_C, "new_steps": n_steps}
            log.info("%s %s", key, cache[key])
            if caches:
                caches[0].write_text(json.dumps(cache))
    rows = []
    for task, layer, n in settings:
        cells = [cache[k] for seed in range(seeds[n]) if (k := f"{args.phase}/{task}/{layer}/{n}/{seed}") in cache]
        if not cells:
            continue
        mean = {k: float(np.mean([c[k] for c in cells])) for k in cells[0]}
        mean.update(task=task, layer=layer, n=n, seeds=len(cells), n_test=len(data[task][3]),
                    old_Cs="/".join(f"{c['old_C']:g}" for c in cells),
                    new_Cs="/".join(f"{c['new_C']:g}" for c in cells),
                    sk_Cs="/".join(f"{c['sk_C_cv']:g}" for c in cells))
        rows.append(mean)
    lines = ["| task | layer | n_train | seeds | sklearn CV acc | sklearn best-C acc | old acc | new acc | old - sklearn CV |"
             " new - sklearn CV | new - best C | C: sklearn CV / old / new (per seed) | s/fit sklearn CV | old | new |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['layer']} | {r['n']} | {r['seeds']} | {r['sk_cv']:.4f} | {r['sk_best']:.4f} | "
                     f"{r['old']:.4f} | {r['new']:.4f} | {100 * (r['old'] - r['sk_cv']):+.2f} | "
                     f"{100 * (r['new'] - r['sk_cv']):+.2f} | {100 * (r['new'] - r['sk_best']):+.2f} | "
                     f"{r['sk_Cs']} / {r['old_Cs']} / {r['new_Cs']} | {r['sk_seconds']:.1f} | {r['old_s']:.1f} | "
                     f"{r['new_s']:.1f} |")
    worst_old = min(100 * (r["old"] - r["sk_cv"]) for r in rows)
    worst_new = min(100 * (r["new"] - r["sk_cv"]) for r in rows)
    lines += ["", f"Test words: {rows[0]['n_test'] if rows else 0} ({'EWT test' if args.phase == 'heldout' else 'EWT dev'}). "
              f"Worst gap to sklearn CV: old {worst_old:+.2f}, new {worst_new:+.2f} points; settings more than 0.5 "
              f"points below: old {sum(100 * (r['old'] - r['sk_cv']) < -0.5 for r in rows)}, "
              f"new {sum(100 * (r['new'] - r['sk_cv']) < -0.5 for r in rows)} of {len(rows)}."]
    text = "\n".join(lines)
    log.info("\n%s", text)
    if args.write:
        append_results(f"## Choosing C: held-out accuracy vs cross-entropy vs scikit-learn ({args.phase} data)",
                       this_command(), text)


if __name__ == "__main__":
    main()
