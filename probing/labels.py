"""Label sources for probes: gold tag columns of the token table, and annotated concepts.

- `tag_labels`: one multi-class task over a token-table column (UPOS, XPOS, ...).
- `concept_labels`: one multi-class task over a selection of a layer's concepts (their
  tokens, classed by concept), as in the paper's multi-class setup.
- `concept_binary_labels`: per concept, concept tokens vs. other tokens drawn uniformly at
  random (seeded) from the layer's other concepts: `negatives` per positive (1 = balanced,
  the default), and more for small concepts when `min_rows` asks for a task of at least that
  many rows (the majority baseline of each result shows any imbalance).
Classes with fewer than `min_examples` examples are dropped; fewer than two classes left is
an error.

A concept's tokens (`positives`):
- `members`: the tokens clustered, the paper's setting. Discovery clusters a sample of the
  corpus (a few occurrences per word type), so most concepts hold tens of tokens: too few
  for a binary probe to be scored on (`probing.min_test_class`).
- `nearest`: the members plus every other token of the store whose nearest concept centroid
  (Euclidean, at the layer the concepts come from; the centroid is the mean of the members)
  is this concept: the clustering extended to the whole corpus, as k-means assigns a point
  (`assign_to_concepts`). Negatives are then drawn from the tokens assigned to the other
  concepts, and a concept keeps at most `max_positives` tokens (its members first, then a
  seeded sample of the rest).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from concepts.annotation.dataset import label_of_record
from concepts.core.errors import UserError
from concepts.discovery.records import Concept
from concepts.extraction.store import row_index
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
        have = [c for c in tokens.columns if c not in ("sentence", "position", "word", "n_subwords", "replaced", "shared")]
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


def assign_to_concepts(X, member_rows: list[list[int]], chunk: int = 32768) -> np.ndarray:
    """`[n]` the concept (an index into `member_rows`) of every row of `X [n, d]`: a member's own
    concept, else the concept whose centroid (the mean of its members' rows of `X`) is nearest
    in Euclidean distance. `X` may be a memory-mapped layer: it is read in chunks of rows."""
    dims = X.shape[1]
    centroids = np.zeros((len(member_rows), dims), dtype=np.float64)
    for i, rows in enumerate(member_rows):
        if rows:
            centroids[i] = np.asarray(X[np.sort(np.asarray(rows))], dtype=np.float64).mean(0)
    sq = (centroids ** 2).sum(1)
    out = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], chunk):
        x = np.asarray(X[start:start + chunk], dtype=np.float64)
        out[start:start + len(x)] = np.argmin(sq[None, :] - 2.0 * x @ centroids.T, axis=1)  # + |x|^2, the same per row
    for i, rows in enumerate(member_rows):
        out[np.asarray(rows, dtype=np.int64)] = i
    return out


def _positives(c_index: int, member_rows: list[list[int]], assigned: np.ndarray | None, max_positives: int | None,
               rng: np.random.Generator) -> np.ndarray:
    """The rows of concept `c_index`: its members, or (given `assigned`) every row assigned to it,
    capped at `max_positives` (members first, then a seeded sample of the other rows)."""
    members = np.asarray(member_rows[c_index], dtype=np.int64)
    if assigned is None:
        return members
    extra = np.setdiff1d(np.flatnonzero(assigned == c_index), members)
    if max_positives is not None and len(members) + len(extra) > max_positives:
        extra = np.sort(rng.choice(extra, max(0, max_positives - len(members)), replace=False))
    return np.concatenate([members, extra])


def _assignment(concepts: list[Concept], member_rows: list[list[int]], positives: str, activations) -> np.ndarray | None:
    if positives == "members":
        return None
    if positives != "nearest":
        raise UserError(f"labels.positives={positives!r}: use members or nearest")
    if activations is None:
        raise ValueError("labels.positives=nearest needs the activations of the concepts' layer")
    return assign_to_concepts(activations, member_rows)


def concept_labels(tokens: pd.DataFrame, concepts: list[Concept], top: int, require_label: bool,
                   min_examples: int, where: str = "concepts", source: str | None = None, positives: str = "members",
                   activations=None, max_positives: int | None = None, seed: int = 0) -> LabelSet:
    """One multi-class task over the `top` largest (labelled) concepts; `positives` and
    `activations` (`[n_tokens, d]`, the concepts' layer) as in `concept_binary_labels`."""
    index = row_index(tokens)
    member_rows = [_members_rows(c, index, where) for c in concepts]
    assigned = _assignment(concepts, member_rows, positives, activations)
    position = {c.concept_id: i for i, c in enumerate(concepts)}
    rng = np.random.default_rng(seed)
    rows, names = [], []
    for c in select_concepts(concepts, top, require_label, source):
        r = _positives(position[c.concept_id], member_rows, assigned, max_positives, rng).tolist()
        rows += r
        names += [concept_name(c, source)] * len(r)
    layer = concepts[0].layer if concepts else -1
    return _finish(f"concepts-L{layer}-top{top}", rows, names, tokens, min_examples)


def concept_binary_labels(tokens: pd.DataFrame, concepts: list[Concept], top: int, require_label: bool,
                          min_examples: int, seed: int = 0, where: str = "concepts", negatives: float = 1.0,
                          min_rows: int = 0, source: str | None = None, positives: str = "members",
                          activations=None, max_positives: int | None = None) -> list[LabelSet]:
    """Per selected concept, its tokens (`positives`: members, or nearest with `activations
    [n_tokens, d]` of the concepts' layer) against tokens of the other concepts."""
    index = row_index(tokens)
    rng = np.random.default_rng(seed)
    member_rows = [_members_rows(c, index, where) for c in concepts]
    assigned = _assignment(concepts, member_rows, positives, activations)
    position = {c.concept_id: i for i, c in enumerate(concepts)}
    all_members = np.concatenate([np.asarray(r, dtype=np.int64) for r in member_rows]) if member_rows else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(member_rows)), [len(r) for r in member_rows])
    out = []
    for c in select_concepts(concepts, top, require_label, source):
        i = position[c.concept_id]
        pos = _positives(i, member_rows, assigned, max_positives, rng)
        others = all_members[owner != i] if assigned is None else np.flatnonzero(assigned != i)
        want = max(int(round(negatives * len(pos))), min_rows - len(pos))
        neg = rng.choice(others, size=min(want, len(others)), replace=False)
        name = concept_name(c, source)
        out.append(_finish(f"concept-L{c.layer}-C{c.concept_id}", pos.tolist() + neg.tolist(),
                           [name] * len(pos) + ["other"] * len(neg), tokens, min_examples))
    return out
