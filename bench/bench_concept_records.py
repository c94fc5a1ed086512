"""Discovery's work after Ward, per layer: turning the K-cut labels into concept records and
writing them, at the paper's size (230,420 sampled tokens, K=600: the whole of
`bench_paper_scale.py`). Side by side in one process:

  before  a scan of the labels per concept, members read with `DataFrame.at`, records by
          `dataclasses.asdict` (the code up to 2026-12-01, copied here as the baseline)
  after   `concepts.discover.build_concepts` (one stable sort) and `Concept.to_json`

Both must give the same bytes. On one H200 exact Ward takes ~44 s a layer at this size, so
the baseline's ~8 s a layer was a sixth of discovery.

    .venv/bin/python bench/bench_concept_records.py [--rows 230420 --k 600 --reps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from concepts.discovery.records import Concept, Member  # noqa: E402
from concepts.discovery.stage import build_concepts  # noqa: E402


def before(sample: pd.DataFrame, labels: np.ndarray, k: int) -> str:
    concepts = []
    for cid in range(k):
        idx = np.flatnonzero(labels == cid)
        members = [Member(str(sample.at[i, "word"]), int(sample.at[i, "sentence"]), int(sample.at[i, "position"])) for i in idx]
        concepts.append(Concept.build("m", 0, k, cid, members))
    return "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in concepts)


def after(sample: pd.DataFrame, labels: np.ndarray, k: int) -> str:
    members = [Member(w, s, p) for w, s, p in zip(sample["word"].astype(str).tolist(), sample["sentence"].astype(int).tolist(),
                                                 sample["position"].astype(int).tolist())]
    return "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in build_concepts("m", 0, k, labels, members))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=230_420)
    ap.add_argument("--k", type=int, default=600)
    ap.add_argument("--types", type=int, default=23_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sample = pd.DataFrame({"word": [f"w{i}" for i in rng.integers(0, args.types, args.rows)],
                           "sentence": np.sort(rng.integers(0, 250_000, args.rows)), "position": rng.integers(0, 40, args.rows)})
    labels = rng.integers(0, args.k, args.rows)
    times: dict[str, list[float]] = {"before": [], "after": []}
    texts = {}
    for _ in range(args.reps):  # interleaved
        for name, fn in (("before", before), ("after", after)):
            t = time.perf_counter()
            texts[name] = fn(sample, labels, args.k)
            times[name].append(time.perf_counter() - t)
    print(f"{args.rows:,} rows, K={args.k}; same bytes: {texts['before'] == texts['after']}")
    print("| records of one layer | seconds (each rep) | best |\n|---|---|---:|")
    for name, ts in times.items():
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in ts)} | {min(ts):.2f} |")


if __name__ == "__main__":
    main()
