"""The default probe against scikit-learn on concept and tag probes, and Probeless against NeuroX.

    .venv/bin/python bench/bench_probe_quality.py [--layers 0,3,6] [--store DIR] [--concepts DIR] [--write]

Data: the demo's workspace (`make demo`: MiniLM on EWT train+dev, K=600 concepts labelled by
alignment). For each layer, on the very rows and splits `probing.train` uses (60/20/20 by
sentence):
- upos: 17 classes, ~137k training rows; scikit-learn's LogisticRegression at its default C=1
  (at this n the penalty hardly matters);
- concepts: the 20 largest labelled concepts as one multi-class task (~1,100 training rows);
- concept_binary: a binary probe per concept (the 20 largest labelled ones; tens to hundreds of
  rows each), reported as the mean over the 20.
For the concept tasks scikit-learn is run twice: C=1, and C chosen by 5-fold cross-validation
(log loss) on train+dev over the same grid, refitted on train. The former default of this
project (whitened inputs, fixed L2 1e-5) is shown for comparison. All on z-scored inputs.
Probeless: this project's `probeless` (raw activations) against NeuroX's
`interpretation.probeless` on the same UPOS training rows (20,000 tokens, as the demo ranks).
"""

from __future__ import annotations

import argparse
import glob
import logging
import time
import warnings

import numpy as np
from results import append_results, this_command

warnings.filterwarnings("ignore")
log = logging.getLogger("bench_probe_quality")


def sklearn_fit(Xtr, ytr, Xdv, ydv, Xte, yte, tune: bool) -> tuple[float, float, float | None]:
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    from probing.regularization import C_GRID

    t0 = time.perf_counter()
    mean, sd = Xtr.mean(0), Xtr.std(0)
    sd = np.where(sd > 1e-8, sd, 1)
    C = 1.0
    if tune:
        cv = LogisticRegressionCV(Cs=list(C_GRID), cv=5, scoring="neg_log_loss", max_iter=5000)
        cv.fit((np.vstack([Xtr, Xdv]) - mean) / sd, np.concatenate([ytr, ydv]))
        C = float(np.atleast_1d(cv.C_)[0])
    sk = LogisticRegression(C=C, max_iter=10000).fit((Xtr - mean) / sd, ytr)
    return float(sk.score((Xte - mean) / sd, yte)), time.perf_counter() - t0, C if tune else None


def ours_fit(X, ls, split, **opt):
    from probing.data import ArrayDataModule
    from probing.fit import FitOptions, fit_probe
    from probing.stats import wilson

    y = ls.y
    dm = ArrayDataModule(X[split.train], y[split.train], X[split.dev], y[split.dev])
    fit = fit_probe(dm, len(ls.classes), FitOptions(**opt))
    hits = fit.predict(X[split.test]) == y[split.test]
    return float(hits.mean()), wilson(int(hits.sum()), len(hits)), fit.seconds, fit.selection.C if fit.selection else None


def probe_rows(store, concepts_dir, layers, k):
    from concepts.discovery.records import read_concepts
    from probing.data import split_examples
    from probing.labels import concept_binary_labels, concept_labels, tag_labels

    tokens = store.tokens()
    upos = tag_labels(tokens, "upos", 10)
    rows = []
    for layer in layers:
        X_all = store.layer(layer)
        cs = read_concepts(concepts_dir / f"layer_{layer:02d}" / f"concepts-K{k}.jsonl")
        tasks = {"upos": [upos], "concepts": [concept_labels(tokens, cs, 20, True, 10)],
                 "concept_binary": concept_binary_labels(tokens, cs, 20, True, 10, 0, "bench", 1.0, 200)}
        for kind, sets in tasks.items():
            acc, lo, hi, secs, old, sk1, sk1_s, skt, skt_s, n_train = ([] for _ in range(10))
            for ls in sets:
                split = split_examples(ls, "sentence", 0.6, 0.2, 0)
                X = np.asarray(X_all[ls.rows], dtype=np.float32)
                a, (low, high), s, _ = ours_fit(X, ls, split)
                acc.append(a), lo.append(low), hi.append(high), secs.append(s), n_train.append(len(split.train))
                if kind != "upos":
                    old.append(ours_fit(X, ls, split, transform="whiten", select=False, l2=1e-5)[0])
                parts = (X[split.train], ls.y[split.train], X[split.dev], ls.y[split.dev], X[split.test], ls.y[split.test])
                a1, s1, _ = sklearn_fit(*parts, tune=False)
                sk1.append(a1), sk1_s.append(s1)
                if kind != "upos":
                    at, st, _ = sklearn_fit(*parts, tune=True)
                    skt.append(at), skt_s.append(st)
            row = {"layer": layer, "task": kind, "probes": len(sets), "n_train": int(np.mean(n_train)),
                   "ours": np.mean(acc), "ci": f"[{np.mean(lo):.3f}, {np.mean(hi):.3f}]", "ours_s": np.sum(secs),
                   "old": np.mean(old) if old else None, "sk1": np.mean(sk1), "sk1_s": np.sum(sk1_s),
                   "skt": np.mean(skt) if skt else None, "skt_s": np.sum(skt_s) if skt_s else None}
            rows.append(row)
            log.info("%s", row)
    return rows


def neurox_rows(store, layers, max_tokens=20000):
    from neurox.interpretation import probeless as nx

    from neurons.rankers import Probeless
    from probing.data import split_examples
    from probing.labels import tag_labels

    ls = tag_labels(store.tokens(), "upos", 10)
    keep = np.sort(np.random.default_rng(0).choice(len(ls), max_tokens, replace=False))
    rows = ls.rows[keep]
    y = ls.y[keep]
    tr = split_examples(type(ls)(ls.name, rows, y, ls.classes, ls.words[keep], ls.sentences[keep])).train
    out = []
    for layer in layers:
        X = np.asarray(store.layer(layer)[rows[tr]], dtype=np.float32)
        t0 = time.perf_counter()
        ours = Probeless(standardize=False).rank(X, y[tr], ls.classes)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        overall, per_tag = nx.get_neuron_ordering_for_all_tags(X, y[tr], dict(enumerate(ls.classes)))
        t_nx = time.perf_counter() - t0
        present = [c for c in ls.classes if c in per_tag]
        per10 = np.mean([len(set(ours.order(c)[:10]) & set(per_tag[c][:10])) for c in present])
        per50 = np.mean([len(set(ours.order(c)[:50]) & set(per_tag[c][:50])) for c in present])
        std = Probeless(standardize=True).rank(X, y[tr], ls.classes)
        row = {"layer": layer, "overall10": len(set(ours.top(10)) & set(overall[:10])),
               "same_order": ours.order().tolist() == overall, "per10": per10, "per50": per50,
               "raw_vs_std10": len(set(ours.top(10)) & set(std.top(10))), "ours_s": t_ours, "nx_s": t_nx}
        out.append(row)
        log.info("%s", row)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="0,3,6")
    ap.add_argument("--store", default=None)
    ap.add_argument("--concepts", default=None)
    ap.add_argument("--k", type=int, default=600)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from pathlib import Path

    from concepts.extraction.store import ActivationStore

    store_dir = Path(args.store or sorted(glob.glob("workspace/minilm/ewt-*/activations"))[0])
    concepts_dir = Path(args.concepts or sorted(glob.glob(str(store_dir.parent / "concepts" / "ward-*")))[0])
    store = ActivationStore(store_dir)
    layers = [int(x) for x in args.layers.split(",")]
    rows = probe_rows(store, concepts_dir, layers, args.k)
    f = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    lines = ["| layer | task | probes | train rows | ours acc | ours 95% CI | ours s | former default | sklearn C=1 | s |"
             " sklearn CV-tuned C | s | ours - best sklearn (points) |",
             "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        best = max(v for v in (r["sk1"], r["skt"]) if v is not None)
        lines.append(f"| {r['layer']} | {r['task']} | {r['probes']} | {r['n_train']} | {f(r['ours'])} | {r['ci']} | "
                     f"{f(r['ours_s'], 1)} | {f(r['old'])} | {f(r['sk1'])} | {f(r['sk1_s'], 1)} | {f(r['skt'])} | "
                     f"{f(r['skt_s'], 1)} | {100 * (r['ours'] - best):+.1f} |")
    nx = neurox_rows(store, layers)
    lines += ["", "| layer | overall top-10 shared with NeuroX | same full order | per-class top-10 shared (mean) |"
              " per-class top-50 shared (mean) | raw vs standardised top-10 shared | ours s | NeuroX s |",
              "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in nx:
        lines.append(f"| {r['layer']} | {r['overall10']}/10 | {r['same_order']} | {r['per10']:.1f}/10 | {r['per50']:.1f}/50 | "
                     f"{r['raw_vs_std10']}/10 | {r['ours_s']:.2f} | {r['nx_s']:.2f} |")
    text = "\n".join(lines)
    log.info("\n%s", text)
    if args.write:
        append_results("## Probe quality: the default probe vs scikit-learn, Probeless vs NeuroX", this_command(), text)


if __name__ == "__main__":
    main()
