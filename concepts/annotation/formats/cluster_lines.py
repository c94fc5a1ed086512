"""Cluster files as written by ConceptX and released in the Transformers ConceptNet (TCN):
one line per token, `word|||occurrence|||sentence_idx|||token_idx|||cluster_id`.

`occurrence` is the 1-based running count of that word among the file's lines (the identity
of the token among equal words); it is recomputed on writing and ignored on reading. Words
are written as they are; a word containing `|||` cannot be represented and is refused.

TCN layout: `sentences.json` (a list of sentences, each a space-joined string of its words)
and `layer{N}/clusters-{K}.txt`, plus `layer{N}/labels-{K}.json` (cluster id -> label).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from concepts.core.artifacts import atomic_write_text
from concepts.core.errors import UserError
from concepts.discovery.records import Annotation, Concept, Member

SEP = "|||"


def format_lines(concepts: list[Concept]) -> str:
    seen: Counter = Counter()
    lines = []
    for c in sorted(concepts, key=lambda c: c.concept_id):
        for m in c.members:
            if SEP in m.word or "\n" in m.word:
                raise UserError(f"word {m.word!r} contains '{SEP}' or a newline; the cluster file format cannot hold it")
            seen[m.word] += 1
            lines.append(SEP.join([m.word, str(seen[m.word]), str(m.sentence), str(m.position), str(c.concept_id)]))
    return "\n".join(lines) + "\n"


def parse_lines(path: Path) -> dict[int, list[Member]]:
    """Cluster id -> members, in file order."""
    out: dict[int, list[Member]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.rsplit(SEP, 4)
            if len(parts) != 5:
                raise UserError(f"{path}:{lineno}: expected word|||occurrence|||sentence|||token|||cluster")
            word, _, sent, tok, cid = parts
            try:
                out.setdefault(int(cid), []).append(Member(word, int(sent), int(tok)))
            except ValueError:
                raise UserError(f"{path}:{lineno}: sentence, token and cluster must be integers") from None
    return out


def write_conceptx(path: Path, concepts: list[Concept]) -> None:
    atomic_write_text(Path(path), format_lines(concepts))


def read_conceptx(path: Path, model: str = "", layer: int = -1) -> list[Concept]:
    groups = parse_lines(Path(path))
    return [Concept.build(model, layer, len(groups), cid, members) for cid, members in sorted(groups.items())]


def write_tcn(root: Path, sentences: list[list[str]], by_layer: dict[int, list[Concept]], label_of=None) -> None:
    """`label_of(concept) -> str | None`: the label written to labels-K.json; default the label
    of record (`concepts.annotation.dataset.label_of_record`)."""
    if label_of is None:
        from concepts.discovery.records import label_of_record

        def label_of(c):
            a = label_of_record(c)
            return a.label if a else None
    root = Path(root)
    atomic_write_text(root / "sentences.json", json.dumps([" ".join(s) for s in sentences], ensure_ascii=False))
    for layer, concepts in by_layer.items():
        if not concepts:
            continue
        k = concepts[0].k
        atomic_write_text(root / f"layer{layer}" / f"clusters-{k}.txt", format_lines(concepts))
        labels = {str(c.concept_id): label_of(c) for c in concepts}
        atomic_write_text(root / f"layer{layer}" / f"labels-{k}.json", json.dumps(labels, ensure_ascii=False, indent=1))


def read_tcn(root: Path, model: str = "") -> tuple[list[list[str]], dict[int, list[Concept]]]:
    root = Path(root)
    sentences = [s.split(" ") for s in json.loads((root / "sentences.json").read_text(encoding="utf-8"))]
    by_layer: dict[int, list[Concept]] = {}
    for layer_dir in sorted(root.glob("layer*")):
        layer = int(layer_dir.name[len("layer"):])
        for f in sorted(layer_dir.glob("clusters-*.txt")):
            k = int(f.stem.split("-")[1])
            groups = parse_lines(f)
            labels_file = layer_dir / f"labels-{k}.json"
            labels = json.loads(labels_file.read_text(encoding="utf-8")) if labels_file.exists() else {}
            concepts = []
            for cid, members in sorted(groups.items()):
                c = Concept.build(model, layer, k, cid, members)
                if labels.get(str(cid)):
                    c.annotations.append(Annotation("tcn", "", "tcn", labels[str(cid)]))
                concepts.append(c)
            by_layer[layer] = concepts
    return sentences, by_layer
