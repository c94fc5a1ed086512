"""Label sources for probes: gold tag columns of the token table, and annotated concepts.

- `tag_labels`: one multi-class task over a token-table column (UPOS, XPOS, ...).
- `concept_labels`: one multi-class task over a selection of a layer's concepts (their
  tokens, classed by concept), as in the paper's multi-class setup.
- `concept_binary_labels`: per concept, concept tokens vs. other tokens drawn uniformly at
  random (seeded) from the layer's other concepts: `negatives` per positive (1 = balanced),
  and more for small concepts so that a task has at least `min_rows` rows (a test split of a
  few rows says nothing; the majority baseline of each result shows any imbalance).
Classes with fewer than `min_examples` examples are dropped; fewer than two classes left is
an error.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from concepts.annotation.dataset import label_of_record
from concepts.errors import UserError
from concepts.records import Concept
from concepts.store import row_index
from probing.data import LabelSet

log = logging.getLogger(__name__)


def _finish(name: str, rows, names, tokens: pd.DataFrame, min_examples: int) -> LabelSet:
    rows = np.asarray(rows, dtype=np.int64)
    names = np.asarray(names, dtype=object)
    kinds, counts = np.unique(names, return_counts=True)
    keep = set(kinds[counts >= min_examples].tolist())
    dropped = len(kinds) - len(keep)
    if dropped:
        log.info("%s: dropped %d class(es) with fewer than %d examples", name, dropped, min_examples)
    mask = np.array([n in keep for n in names], dtype=bool)
    rows, names = rows[mask], names[mask]
    classes = sorted(keep)
    if len(classes) < 2:
        raise UserError(f"label source {name!r} has {len(classes)} class(es) with at least {min_examples} examples; "
                        "a probe needs two or more (lower probing.min_examples or use more data)")
    index = {c: i for i, c in enumerate(classes)}
    y = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
    return LabelSet(name, rows, y, classes, tokens["word"].to_numpy()[rows], tokens["sentence"].to_numpy()[rows])


def tag_labels(tokens: pd.DataFrame, column: str, min_examples: int = 10, max_tokens: int | None = None,
               seed: int = 0) -> LabelSet:
    if column not in tokens.columns:
        have = [c for c in tokens.columns if c not in ("sentence", "position", "word", "n_subwords", "replaced")]
        raise UserError(f"labels.tag={column!r}: the store's token table has no such column; it has {have or 'no tag columns'}")
    values = tokens[column].astype(str).to_numpy()
    rows = np.flatnonzero((values != "") & (values != "_") & (values != "None"))
    if max_tokens is not None and len(rows) > max_tokens:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_tokens, replace=False))
    return _finish(column, rows, values[rows], tokens, min_examples)


def select_concepts(concepts: list[Concept], top: int, require_label: bool, source: str | None = None) -> list[Concept]:
    """The `top` largest concepts (labelled ones only when `require_label`: a label of record,
    `concepts.annotation.dataset.label_of_record`), ties by id."""
    pool = [c for c in concepts if not require_label or label_of_record(c, source) is not None]
    return sorted(pool, key=lambda c: (-c.size, c.concept_id))[:top]


def concept_name(c: Concept, source: str | None = None) -> str:
    a = label_of_record(c, source)
    return f"C{c.concept_id}: {a.label}" if a else f"C{c.concept_id}"


def _members_rows(c: Concept, index: dict, where: str) -> list[int]:
    try:
        return [index[(m.sentence, m.position)] for m in c.members]
    except KeyError:
        raise UserError(f"{where}: concept {c.concept_id} names tokens the activation store does not have; "
                        "the concepts come from another corpus or store (re-run concepts.discover for this store)") from None


def concept_labels(tokens: pd.DataFrame, concepts: list[Concept], top: int, require_label: bool,
                   min_examples: int, where: str = "concepts", source: str | None = None) -> LabelSet:
    index = row_index(tokens)
    chosen = select_concepts(concepts, top, require_label, source)
    rows, names = [], []
    for c in chosen:
        r = _members_rows(c, index, where)
        rows += r
        names += [concept_name(c, source)] * len(r)
    layer = concepts[0].layer if concepts else -1
    return _finish(f"concepts-L{layer}-top{top}", rows, names, tokens, min_examples)


def concept_binary_labels(tokens: pd.DataFrame, concepts: list[Concept], top: int, require_label: bool,
                          min_examples: int, seed: int = 0, where: str = "concepts", negatives: float = 1.0,
                          min_rows: int = 0, source: str | None = None) -> list[LabelSet]:
    index = row_index(tokens)
    rng = np.random.default_rng(seed)
    all_rows = {c.concept_id: _members_rows(c, index, where) for c in concepts}
    out = []
    for c in select_concepts(concepts, top, require_label, source):
        pos = all_rows[c.concept_id]
        others = np.array([r for cid, rs in all_rows.items() if cid != c.concept_id for r in rs], dtype=np.int64)
        want = max(int(round(negatives * len(pos))), min_rows - len(pos))
        neg = rng.choice(others, size=min(want, len(others)), replace=False)
        name = concept_name(c, source)
        out.append(_finish(f"concept-L{c.layer}-C{c.concept_id}", list(pos) + neg.tolist(),
                           [name] * len(pos) + ["other"] * len(neg), tokens, min_examples))
    return out
