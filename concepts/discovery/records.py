"""Concept records: one JSON line per concept (see DESIGN.md, Artifacts)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from concepts.core.artifacts import atomic_write_text
from concepts.core.errors import UserError
from concepts.core.runtime import gc_paused


@dataclass(slots=True)
class Member:
    word: str
    sentence: int  # sentence index in the store's sentences.jsonl
    position: int  # word position in the sentence


@dataclass
class Annotation:
    annotator: str  # backend: openai, alignment, hf_local
    model: str
    prompt_id: str
    label: str | None  # None when the reply was a refusal or unusable
    status: str = "ok"  # ok | none | refused | filtered | truncated | unparseable | error | unaligned
    description: str | None = None
    concept_type: str | None = None
    raw: str | None = None
    scores: dict | None = None  # label scoring: precision, recall, f1, positives, negatives, scorer
    settings: str | None = None  # generation settings (with annotator, model, prompt_id: the annotation's identity)


@dataclass
class Concept:
    model: str
    layer: int
    k: int
    concept_id: int
    members: list[Member]
    type_counts: dict[str, int] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    alignment: dict[str, dict] = field(default_factory=dict)  # tag set -> {best: [[tag, share]...], aligned: tag|None}

    @property
    def size(self) -> int:
        return len(self.members)

    @classmethod
    def build(cls, model: str, layer: int, k: int, concept_id: int, members: list[Member]) -> Concept:
        counts = Counter(m.word for m in members)
        return cls(model, layer, k, concept_id, members, dict(counts.most_common()))

    def to_json(self) -> dict:
        """`dataclasses.asdict(self)`, built directly: asdict deep-copies every member (the cost of
        writing a layer's concepts at the paper's scale)."""
        return {"model": self.model, "layer": self.layer, "k": self.k, "concept_id": self.concept_id,
                "members": [{"word": m.word, "sentence": m.sentence, "position": m.position} for m in self.members],
                "type_counts": dict(self.type_counts), "annotations": [asdict(a) for a in self.annotations],
                "alignment": copy.deepcopy(self.alignment)}

    @classmethod
    def from_json(cls, d: dict) -> Concept:
        return cls(
            model=d["model"], layer=int(d["layer"]), k=int(d["k"]), concept_id=int(d["concept_id"]),
            members=[Member(m["word"], m["sentence"], m["position"]) for m in d["members"]],
            type_counts={str(k): int(v) for k, v in d.get("type_counts", {}).items()},
            annotations=[Annotation(**a) for a in d.get("annotations", [])],
            alignment=d.get("alignment", {}),
        )


def write_concepts(path: Path, concepts: list[Concept]) -> None:
    atomic_write_text(Path(path), "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in concepts))


def read_concepts(path: Path) -> list[Concept]:
    """Concept records of a JSON-lines file; a record that does not parse (a truncated file, an edit
    by hand) is a `UserError` naming the file and line."""
    out = []
    with open(path, encoding="utf-8") as fh, gc_paused():
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(Concept.from_json(json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not a JSON record ({e.msg} at column {e.colno}); "
                                "fix the line or re-run the stage that wrote it") from None
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                what = f"missing field {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
                raise UserError(f"{path}:{n}: not a concept record ({what}); "
                                "fix the line or re-run the stage that wrote it") from None
    return out


# ---------------------------------------------------------------- the label of record

def matches(a: Annotation, source: str) -> bool:
    """Does annotation `a` come from `source` = "annotator[:model[:prompt]]"? (A model name may
    hold ":" itself, as in `llama3:8b`: the full identity matches exactly.)"""
    if source == f"{a.annotator}:{a.model}:{a.prompt_id}":
        return True
    want = source.split(":", 2)
    have = [a.annotator, a.model, a.prompt_id]
    return all(w == h for w, h in zip(want, have))


def views_source_file(folder: Path, k: int) -> Path:
    """Where a concepts folder records the label source its views (explorer, dataset) show."""
    return Path(folder) / "annotations" / f"label-of-record-K{k}.json"


def views_source(folder: Path, k: int) -> str | None:
    """The label source the last annotation of the folder at K chose for its views (None: the rule)."""
    try:
        return json.loads(views_source_file(folder, k).read_text(encoding="utf-8")).get("label_source")
    except (OSError, ValueError, AttributeError):
        return None


def label_of_record(c: Concept, source: str | None = None) -> Annotation | None:
    """The one label of a concept that every export, the explorer and probing use.

    The rule: among the annotations that hold a label (status ok), those of `source`
    ("annotator[:model[:prompt]]") when given; otherwise LLM annotations before the alignment
    baseline; of those, the one written last (a new run appends or updates its own annotation
    at the end of the list). None when no annotation qualifies."""
    usable = [a for a in c.annotations if a.label and a.status == "ok"]
    if source:
        usable = [a for a in usable if matches(a, source)]
    else:
        llm = [a for a in usable if a.annotator != "alignment"]
        usable = llm or usable
    return usable[-1] if usable else None
