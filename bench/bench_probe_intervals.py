"""What a probe's 95% interval covers: token (Wilson) and sentence-bootstrap intervals against
the spread of the number over re-splits and re-fits.

    .venv/bin/python bench/bench_probe_intervals.py --store DIR [--layers 0,3,6] [--resplits 20] [--write]

For each layer, the UPOS probe (the default: L-BFGS, C chosen on held-out data, control task)
is trained on `resplits` sentence splits (60/20/20, stratified, split seeds 0..N-1). For each
split: accuracy and selectivity with a token interval (Wilson; selectivity by a paired
bootstrap over tokens, the former default) and a sentence-bootstrap interval (the default).
Reported: the SD of accuracy and selectivity across the splits; the SD each interval implies
(its width / 3.92); and coverage: the share of the splits whose interval holds the mean over
all splits (what a reader takes the interval to promise). Neither interval is meant to cover
the split-to-split variation in full (that includes the fit); the table shows how far each
falls short.

Data for the numbers in RESULTS.md: a MiniLM store of the UD EWT *test* split, which nothing
in this project was tuned on (`python -m concepts.extract model=minilm 'corpus.splits=[test]'
paths.workspace=/work/heldout_ws`).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results import append_results, this_command

log = logging.getLogger("bench_probe_intervals")


def one_layer(store, ls, layer: int, resplits: int, max_tokens: int | None) -> dict:
    from probing.data import StoreDataModule, control_labels, split_examples
    from probing.fit import FitOptions, fit_probe
    from probing.stats import paired_bootstrap, sentence_bootstrap, wilson

    per = []
    for seed in range(resplits):
        split = split_examples(ls, "sentence", 0.6, 0.2, seed)
        dm = StoreDataModule(store, layer, ls, split)
        opts = FitOptions(seed=0)
        fit = fit_probe(dm, len(ls.classes), opts)
        X_test, y_test = dm.arrays["test"]
        pred = fit.predict(X_test)
        yc = control_labels(ls.words, ls.y, split.train, len(ls.classes), 0)
        cfit = fit_probe(dm.with_labels(yc[split.train], yc[split.dev], yc[split.test]), len(ls.classes),
                         replace(opts, select=False, l2=fit.l2))
        cpred = cfit.predict(X_test)
        hits, chits = pred == y_test, cpred == yc[split.test]
        boot = sentence_bootstrap(ls.sentences[split.test], y_test, pred, yc[split.test], cpred, seed=seed)
        per.append({"acc": hits.mean(), "sel": hits.mean() - chits.mean(),
                    "acc_tok": wilson(int(hits.sum()), len(hits)), "sel_tok": paired_bootstrap(hits, chits, seed=seed),
                    "acc_sent": boot.accuracy, "sel_sent": boot.selectivity})
        log.info("layer %d split %d: accuracy %.4f, selectivity %.4f", layer, seed, per[-1]["acc"], per[-1]["sel"])
    out = {"layer": layer, "splits": resplits, "n_test": len(split.test)}
    for stat in ("acc", "sel"):
        values = np.array([p[stat] for p in per])
        mean = values.mean()
        out[f"{stat}_sd"] = values.std(ddof=1)
        for kind in ("tok", "sent"):
            ivs = [p[f"{stat}_{kind}"] for p in per]
            out[f"{stat}_{kind}_sd"] = np.mean([(hi - lo) / 3.92 for lo, hi in ivs])
            out[f"{stat}_{kind}_cover"] = np.mean([lo <= mean <= hi for lo, hi in ivs])
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True, help="an activation store folder (with UPOS tags)")
    ap.add_argument("--layers", default="0,3,6")
    ap.add_argument("--resplits", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from concepts.extraction.store import ActivationStore
    from probing.labels import tag_labels

    store = ActivationStore(Path(args.store))
    ls = tag_labels(store.tokens(), "upos", 10, args.max_tokens, 0)
    t0 = time.perf_counter()
    rows = [one_layer(store, ls, int(x), args.resplits, args.max_tokens) for x in args.layers.split(",")]
    lines = [f"UPOS probe, {len(ls)} tokens in {len(np.unique(ls.sentences))} sentences; {args.resplits} stratified "
             f"sentence splits per layer ({time.perf_counter() - t0:.0f} s in all).", "",
             "| layer | test tokens | accuracy SD over splits | token interval's SD | sentence interval's SD |"
             " token coverage | sentence coverage | selectivity SD over splits | token | sentence | token coverage |"
             " sentence coverage |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['n_test']} | {r['acc_sd']:.4f} | {r['acc_tok_sd']:.4f} | {r['acc_sent_sd']:.4f} | "
                     f"{r['acc_tok_cover']:.2f} | {r['acc_sent_cover']:.2f} | {r['sel_sd']:.4f} | {r['sel_tok_sd']:.4f} | "
                     f"{r['sel_sent_sd']:.4f} | {r['sel_tok_cover']:.2f} | {r['sel_sent_cover']:.2f} |")
    text = "\n".join(lines)
    log.info("\n%s", text)
    if args.write:
        append_results("## Probe intervals: what they cover, against re-splits on held-out data", this_command(), text)


if __name__ == "__main__":
    main()
