"""Sweep summaries for neuron rankings: the evaluation rows of every job in one table
(curves.csv / .parquet), accuracy-vs-k plots, and the Jaccard overlap of top-k neurons between
the methods ranked on the same model and layer (overlap.csv).

    python -m neurons.summary <folder> [<folder> ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback

from concepts.core.artifacts import atomic_write_text
from neurons.evaluate import jaccard
from neurons.plots import accuracy_vs_k
from neurons.ranking import Ranking

log = logging.getLogger(__name__)


def collect(folders: list[Path]) -> tuple[pd.DataFrame, list[Path]]:
    rows, rankings = [], []
    for folder in folders:
        for f in sorted(Path(folder).rglob("rank-results.json")):
            d = json.loads(f.read_text())
            rows += d["rows"]
            rankings += [Path(p) for p in d["rankings"]]
    return pd.DataFrame(rows), sorted(set(rankings))


def overlaps(ranking_dirs: list[Path], ks: tuple[int, ...] = (10, 50)) -> pd.DataFrame:
    """Jaccard overlap of top-k sets between methods on the same model and unit (layer)."""
    loaded = [Ranking.load(p) for p in ranking_dirs if (p / "ranking.json").exists()]
    rows = []
    by_unit: dict[tuple, list[Ranking]] = {}
    for r in loaded:
        by_unit.setdefault((r.meta.get("model"), r.meta.get("unit"), r.meta.get("task")), []).append(r)
    for (model, unit, task), rs in by_unit.items():
        rs = sorted(rs, key=lambda r: r.method)
        for i, a in enumerate(rs):
            for b in rs[i + 1:]:
                for k in ks:
                    if k <= a.dim:
                        rows.append({"model": model, "unit": unit, "task": task, "a": a.method, "b": b.method, "k": k,
                                     "jaccard": jaccard(a.top(k), b.top(k))})
    return pd.DataFrame(rows)


def write_summary(out: Path, folders: list[Path]) -> pd.DataFrame:
    curves, rankings = collect(folders)
    if curves.empty:
        return curves
    atomic_write_text(out / "curves.csv", curves.to_csv(index=False))
    curves.to_parquet(out / "curves.parquet", index=False)
    accuracy_vs_k(curves, out / "curves.png", f"neuron rankings: {out.name}")
    ov = overlaps(rankings)
    if len(ov):
        atomic_write_text(out / "overlap.csv", ov.to_csv(index=False))
    return curves


class RankSweepSummary(Callback):
    """Hydra callback: at the end of a neurons.rank multirun, one summary in the sweep folder."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        curves = write_summary(sweep, [sweep])
        if curves.empty:
            log.warning("no ranking results under %s", sweep)
        else:
            log.info("ranking sweep summary: %s", sweep / "curves.csv")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description="Summarise neuron-ranking results of one or more folders.")
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    curves = write_summary(args.out or args.folders[0], args.folders)
    if curves.empty:
        log.error("no rank-results.json under %s", ", ".join(map(str, args.folders)))
        return 2
    log.info("%s", curves.groupby(["method", "kind", "k"])["accuracy"].mean().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
