"""Where does a wide neuron with no class information rank? Every ranker, raw and standardised.

    .venv/bin/python bench/bench_outlier_neuron.py [--write]

384 neurons N(0, 1) over 20,000 tokens of 10 classes; neurons 0-9 carry class c as a shift of
+0.5 on neuron c; neuron 200 has no class information but mean m and sd s (s = 10, 30, 100
times the others', and the issue's mean 30 / sd 40). Reported: the overall rank of neuron 200
(1 = first) and how many of the 10 informative neurons are in the top 10.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from results import append_results, this_command

log = logging.getLogger("bench_outlier_neuron")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from neurons.rankers import make_ranker

    rng = np.random.default_rng(0)
    n, d, k = 20000, 384, 10
    y = rng.integers(0, k, n)
    base = rng.normal(size=(n, d)).astype(np.float32)
    base[np.arange(n), y] += 0.5
    lines = ["| wide neuron (mean, sd) | method | rank raw | informative in top-10, raw | rank standardised |"
             " informative in top-10, standardised |", "|---|---|---:|---:|---:|---:|"]
    for mean, sd in ((0, 10), (0, 30), (0, 100), (30, 40)):
        X = base.copy()
        X[:, 200] = mean + sd * rng.normal(size=n)
        for method in ("probeless", "probeless_ovr", "probe_weights", "iou", "gaussian"):
            cells = []
            for std in (False, True):
                r = make_ranker(method, standardize=std).rank(X, y, [str(c) for c in range(k)])
                order = r.order()
                cells += [int(np.flatnonzero(order == 200)[0]) + 1, len(set(order[:10].tolist()) & set(range(10)))]
            lines.append(f"| ({mean}, {sd}) | {method} | {cells[0]} | {cells[1]}/10 | {cells[2]} | {cells[3]}/10 |")
            log.info("%s", lines[-1])
    text = "\n".join(lines)
    log.info("\n%s", text)
    if args.write:
        append_results("## A wide uninformative neuron under every ranker", this_command(), text)


if __name__ == "__main__":
    main()
