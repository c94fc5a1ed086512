"""The paper's super/sub-concept table (Table 11) for one layer: 6 super concepts of 8 sub
concepts each, ranked with Probeless (z-scored, the default) against all the layer's other
sampled tokens. Side by side in one process:

  before  each of the 54 rankings z-scores the whole pool itself (the code up to 2026-12-01)
  after   `neurons.evaluate.super_sub_overlap`: the pool z-scored once

Both must give the same rows. At the paper's size the pool is the layer's 230k sampled tokens.

    .venv/bin/python bench/bench_super_sub.py [--rows 230420 --dim 768]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from neurons.evaluate import super_sub_overlap  # noqa: E402
from neurons.rankers import make_ranker  # noqa: E402


def before(ranker, X, groups, top=10) -> list[dict]:
    rows = []
    for sup, subs in groups.items():
        union = np.zeros(len(X), dtype=bool)
        for m in subs.values():
            union |= m
        sup_top = ranker.rank(X, union.astype(int), ["rest", sup]).top(top, 1)
        for sub, m in subs.items():
            sub_top = ranker.rank(X, m.astype(int), ["rest", sub]).top(top, 1)
            shared = len(set(sup_top.tolist()) & set(sub_top.tolist()))
            rows.append({"super": sup, "sub": sub, "sub_tokens": int(m.sum()), "shared": shared, "share": shared / top})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=230_420)
    ap.add_argument("--dim", type=int, default=768)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    groups, start = {}, 0
    for s in range(6):
        groups[f"S{s}"] = {}
        for j in range(8):
            m = np.zeros(args.rows, dtype=bool)
            m[start:start + 300] = True
            X[m, (s * 8 + j) % args.dim] += 2.0
            groups[f"S{s}"][f"C{s * 8 + j}"] = m
            start += 300
    ranker = make_ranker("probeless", standardize=True)
    t = time.perf_counter()
    old = before(ranker, X, groups)
    t_old = time.perf_counter() - t
    t = time.perf_counter()
    new = super_sub_overlap(ranker, X, groups)
    t_new = time.perf_counter() - t
    print(f"{args.rows:,} x {args.dim}, 6 super x 8 sub concepts (54 rankings); same rows: {old == new}")
    print(f"| super/sub table of one layer | seconds |\n|---|---:|\n| before: z-scored per ranking | {t_old:.1f} |\n"
          f"| after: z-scored once | {t_new:.1f} |")


if __name__ == "__main__":
    main()
