"""What drawing a concept's positives by nearest centroid changes in binary concept probes.

    .venv/bin/python bench/bench_concept_positives.py --workspace /work/demo_ws [--layers 0,3,6] [--write]

On the demo's workspace (MiniLM on EWT train+dev, K=600, alignment labels; `make demo`), the
binary concept probes (`labels=concept_binary`: the 20 largest labelled concepts of a layer,
balanced negatives, the default probe with its control task) are run three ways:
- `members, old`: the former defaults: the clustered tokens, padded with negatives to 200
  rows, no minimum of test positives (`labels.min_rows=200 probing.min_test_class=1
  split.stratify=false`);
- `members`: the clustered tokens, balanced, stratified split, 20 test tokens of each class
  required (skipped otherwise);
- `nearest` (the default): also every token of the store whose nearest concept centroid is
  the concept (at most 2,000 per concept).
Per layer: tasks scored and skipped, median test positives, mean accuracy, balanced accuracy,
positive-class F1, majority baseline, selectivity, and the number of probes flagged.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from results import append_results, this_command

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
log = logging.getLogger("bench_concept_positives")

WAYS = {
    "members, old": ["labels.positives=members", "labels.min_rows=200", "probing.min_test_class=1", "split.stratify=false"],
    "members": ["labels.positives=members"],
    "nearest": ["labels.positives=nearest"],
}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--layers", default="0,3,6")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from hydra import compose, initialize_config_dir

    import probing.train as train_mod

    concepts = sorted(Path(args.workspace).glob("minilm/ewt-*/concepts/ward-*"))[0]
    base = [f"paths.workspace={args.workspace}", "corpus.splits=[train,dev]", "discovery.k=600", f"labels.concepts={concepts}",
            "labels=concept_binary", "extraction.progress=false", "probing.plot=false"]
    lines = ["| layer | positives | tasks scored | skipped | median test positives | accuracy | balanced acc. |"
             " positive F1 | majority | selectivity | flagged | seconds |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for layer in args.layers.split(","):
        for way, over in WAYS.items():
            t0 = time.perf_counter()
            with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
                cfg = compose(config_name="train", overrides=[*base, f"layer={layer}", *over])
            res = train_mod.run(cfg).results
            ok = [r for r in res if r.skipped is None]
            pos = [min(r.test_per_class.values()) if r.test_per_class else
                   r.per_class.get(next(c for c in r.per_class if c != "other"), {}).get("support", 0) for r in res]
            mean = lambda f, ok=ok: np.mean([f(r) for r in ok]) if ok else float("nan")  # noqa: E731
            lines.append(
                f"| {layer} | {way} | {len(ok)} | {len(res) - len(ok)} | {np.median(pos):.0f} | {mean(lambda r: r.accuracy):.3f} | "
                f"{mean(lambda r: r.balanced_accuracy or np.nan):.3f} | {mean(lambda r: r.positive_f1 or np.nan):.3f} | "
                f"{mean(lambda r: r.majority_accuracy):.3f} | {mean(lambda r: r.selectivity):.3f} | "
                f"{sum(bool(r.flags) for r in ok)} | {time.perf_counter() - t0:.0f} |")
            log.info("%s", lines[-1])
    text = "\n".join(lines)
    log.info("\n%s", text)
    if args.write:
        append_results("## Binary concept probes: positives by nearest centroid", this_command(), text)


if __name__ == "__main__":
    main()
