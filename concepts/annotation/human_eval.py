"""Human evaluation of labels, as in the paper: a CSV per rater with three yes/no questions
per concept (Q1 acceptable, Q2 precise, Q3 better than the human-defined label), and a
summary of filled-in CSVs: the majority's share of "yes", the mean pairwise agreement and
Fleiss' kappa per question.

    python -m concepts.annotation.human_eval rater1.csv rater2.csv rater3.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import random
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

from concepts.core.artifacts import atomic_write_text
from concepts.core.errors import UserError
from concepts.discovery.records import Concept

log = logging.getLogger(__name__)

QUESTIONS = {
    "q1_acceptable": "Is the label an acceptable description of the words?",
    "q2_precise": "Is the label precise (not too general)?",
    "q3_better_than_human": "Is the label better than the human-defined label?",
}
COLUMNS = ["layer", "concept_id", "size", "words", "label", "human_label", *QUESTIONS]
YES = {"yes", "y", "1", "true"}
NO = {"no", "n", "0", "false"}


def write_sheet(path: Path, by_layer: dict[int, list[Concept]], per_layer: int, seed: int = 0,
                label_of=None, human_of=None) -> int:
    """A blank rating sheet of `per_layer` labelled concepts per layer, drawn at random (seeded).
    `label_of(c)` and `human_of(c)` give the label to rate and the human-defined one."""
    rng = random.Random(seed)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    n = 0
    for layer in sorted(by_layer):
        labelled = [c for c in by_layer[layer] if label_of(c)]
        for c in sorted(rng.sample(labelled, min(per_layer, len(labelled))), key=lambda c: c.concept_id):
            words = ", ".join(f"{w} ({k})" for w, k in list(c.type_counts.items())[:30])
            w.writerow([layer, c.concept_id, c.size, words, label_of(c), human_of(c) or "", "", "", ""])
            n += 1
    atomic_write_text(Path(path), buf.getvalue())
    return n


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa.

    Args:
        counts: `[items, categories]` how many raters put each item in each category (the same
            number of raters per item).
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(1)
    if not np.allclose(n, n[0]) or n[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n = n[0]
    p_item = ((counts ** 2).sum(1) - n) / (n * (n - 1))
    p_cat = counts.sum(0) / counts.sum()
    pe = (p_cat ** 2).sum()
    return float((p_item.mean() - pe) / (1 - pe)) if pe < 1 else 1.0


def _read(path: Path) -> dict[tuple[int, int], dict[str, bool]]:
    out = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("layer", "concept_id", *QUESTIONS) if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}; start from the sheet concepts.annotate writes")
        for lineno, row in enumerate(reader, start=2):
            answers = {}
            for q in QUESTIONS:
                v = (row[q] or "").strip().lower()
                if v not in YES | NO:
                    raise UserError(f"{path}:{lineno}: {q}={row[q]!r}; answer yes or no")
                answers[q] = v in YES
            out[(int(row["layer"]), int(row["concept_id"]))] = answers
    return out


def summarize(paths: list[Path]) -> list[dict]:
    """Per question: items, raters, majority yes share, mean pairwise agreement, Fleiss' kappa."""
    if len(paths) < 2:
        raise UserError("give at least two filled-in sheets (one per rater)")
    sheets = [_read(Path(p)) for p in paths]
    items = sorted(set.intersection(*(set(s) for s in sheets)))
    if not items:
        raise UserError("the sheets share no concept (layer, concept_id); were they made from the same run?")
    every = set.union(*(set(s) for s in sheets))
    if len(every) > len(items):
        partial = {str(p): len(set(s) - set(items)) for p, s in zip(paths, sheets) if set(s) - set(items)}
        log.warning("%d concept(s) are missing from some sheets and are left out (only the %d rated in every sheet "
                    "count): %s", len(every) - len(items), len(items),
                    ", ".join(f"{p} has {n} the others lack" for p, n in partial.items()))
    rows = []
    for q in QUESTIONS:
        votes = np.array([[s[i][q] for s in sheets] for i in items])  # [items, raters]
        yes = votes.sum(1)
        counts = np.stack([yes, len(sheets) - yes], 1)
        pairs = [np.mean(votes[:, a] == votes[:, b]) for a, b in combinations(range(len(sheets)), 2)]
        rows.append({"question": q, "items": len(items), "raters": len(sheets),
                     "majority_yes": float(np.mean(yes * 2 > len(sheets))),
                     "pairwise_agreement": float(np.mean(pairs)), "fleiss_kappa": fleiss_kappa(counts)})
    return rows


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description="Summarise filled-in human-evaluation sheets.")
    ap.add_argument("sheets", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="also write the summary as CSV")
    args = ap.parse_args(argv)
    try:
        rows = summarize(args.sheets)
    except UserError as e:
        log.error("%s", e)
        return 2
    lines = [f"{'question':24s} {'items':>5s} {'raters':>6s} {'yes':>6s} {'agree':>6s} {'kappa':>6s}"]
    lines += [f"{r['question']:24s} {r['items']:5d} {r['raters']:6d} {r['majority_yes']:6.2f} "
              f"{r['pairwise_agreement']:6.2f} {r['fleiss_kappa']:6.3f}" for r in rows]
    log.info("%s", "\n".join(lines))
    if args.out:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
