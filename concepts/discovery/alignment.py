"""Alignment of concepts with human-defined tag sets (ConceptX).

Concept c aligns with tag t when at least theta of c's tokens carry t. Per layer and tag set:
the share of concepts aligned, the share of the tag set's tags (those present in the tokens)
aligned with some concept, and their mean.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass
class AlignmentSummary:
    tag_set: str
    concepts: int
    concepts_aligned: int
    tags: int
    tags_covered: int

    @property
    def concept_share(self) -> float:
        return self.concepts_aligned / self.concepts if self.concepts else 0.0

    @property
    def tag_share(self) -> float:
        return self.tags_covered / self.tags if self.tags else 0.0

    @property
    def mean(self) -> float:
        return (self.concept_share + self.tag_share) / 2

    def to_row(self) -> dict:
        return {"tag_set": self.tag_set, "concepts": self.concepts, "concepts_aligned": self.concepts_aligned,
                "tags": self.tags, "tags_covered": self.tags_covered, "concept_share": self.concept_share,
                "tag_share": self.tag_share, "mean": self.mean}


def align(labels: np.ndarray, tags: list[tuple[str, ...]], theta: float = 0.9, top: int = 3,
          name: str = "") -> tuple[dict[int, dict], AlignmentSummary]:
    """Align each concept with one tag set.

    Args:
        labels: `[n]` concept id of each token.
        tags: `[n]` tuple of tags of each token.
    Returns:
        per concept id `{"best": [[tag, share], ...], "aligned": tag or None}`, and the summary.
    """
    by_concept: dict[int, Counter] = {}
    sizes = Counter(labels.tolist())
    for lab, ts in zip(labels.tolist(), tags):
        c = by_concept.setdefault(lab, Counter())
        c.update(set(ts))
    per: dict[int, dict] = {}
    covered = set()
    for lab, n in sizes.items():
        counts = by_concept.get(lab, Counter())
        best = [[t, cnt / n] for t, cnt in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
        aligned = best[0][0] if best and best[0][1] >= theta else None
        if aligned is not None:
            covered.update(t for t, cnt in counts.items() if cnt / n >= theta)
        per[int(lab)] = {"best": best, "aligned": aligned}
    all_tags = {t for ts in tags for t in ts}
    summary = AlignmentSummary(name, len(sizes), sum(1 for p in per.values() if p["aligned"]), len(all_tags), len(covered))
    return per, summary
