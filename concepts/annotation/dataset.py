"""The released concept dataset: the Transformers ConceptNet layout, JSON lines and Parquet
(optionally a Hugging Face `datasets` folder).

Parquet schema, one row per concept (also in the README):
    model str, layer int, k int, concept_id int, size int,
    label str|null (the label of record: `label_of_record`), annotator str|null, label_model str|null,
    prompt_id str|null, label_settings str|null,
    concept_type str|null, words list<str> (types, most frequent first),
    members list<struct<word str, sentence int, position int>>,
    annotations list<struct<annotator, model, prompt_id, label, status, description, concept_type, raw, scores_json>>,
    type_counts_json str, alignment_json str
`read_parquet` turns it back into the same concept records.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from concepts.core.artifacts import atomic_write_text, unique_tmp
from concepts.core.errors import UserError
from concepts.discovery.records import (  # noqa: F401  (label_of_record: its documented home is here too)
    Annotation,
    Concept,
    Member,
    label_of_record,
    matches,
    views_source,
    views_source_file,
)


def annotator_source(annotator, prompt_id: str) -> str:
    """The full identity "annotator:model:prompt" of the annotations that an annotator config
    (`AnnotatorConfig`) writes: the alignment annotator's model names its tag sets."""
    if annotator.backend == "alignment":
        return f"alignment:{'+'.join(annotator.tag_sets)}:alignment"
    return f"{annotator.backend}:{annotator.model}:{prompt_id}"


def label_source_of(cfg) -> str:
    """The label source a run uses (`annotation.label_source` resolved against the run's annotator):
    null, or a prefix of the configured annotator's identity ("alignment", "openai:gpt-4o-mini"),
    is the configured annotator's own labels, so the label a concept gets never depends on what
    other annotators wrote into the records before; any other value is kept as given."""
    configured = annotator_source(cfg.annotator, cfg.prompt.id)
    given = cfg.annotation.label_source
    if not given:
        return configured
    parts, have = given.split(":", 2), configured.split(":", 2)
    if given == configured or (len(parts) < 3 and parts == have[:len(parts)]):
        return configured
    return given


def sources_in(by_layer: dict[int, list[Concept]]) -> Counter:
    """Full identity "annotator:model:prompt" -> concepts holding a usable label of it."""
    found: Counter = Counter()
    for cs in by_layer.values():
        for c in cs:
            found.update({f"{a.annotator}:{a.model}:{a.prompt_id}" for a in c.annotations if a.label and a.status == "ok"})
    return found


def check_label_source(cfg, by_layer: dict[int, list[Concept]], where: Path | str) -> str:
    """The run's label source (`label_source_of`); a `annotation.label_source` given by the user
    that matches no label in `by_layer` is an error naming the sources that exist (a typo such
    as `OpenAI`, or another model, would otherwise empty every export)."""
    source = label_source_of(cfg)
    if cfg.annotation.label_source and by_layer and not any(
            label_of_record(c, source) for cs in by_layer.values() for c in cs):
        found = sources_in(by_layer)
        have = ", ".join(f"{s} ({n} concepts)" for s, n in found.most_common()) or "none: no concept has a label yet"
        raise UserError(f"annotation.label_source={cfg.annotation.label_source!r} matches no label in {where}; "
                        f"the labels there come from: {have}. Pass one of them (or a prefix, such as the annotator "
                        "alone), or null for this run's annotator")
    return source


def record_views_source(folder: Path, k: int, source: str) -> None:
    atomic_write_text(views_source_file(folder, k), json.dumps({"label_source": source}) + "\n")


def to_frame(concepts: list[Concept], source: str | None = None) -> pd.DataFrame:
    rows = []
    for c in concepts:
        a = label_of_record(c, source)
        rows.append({
            "model": c.model, "layer": c.layer, "k": c.k, "concept_id": c.concept_id, "size": c.size,
            "label": a.label if a else None, "annotator": a.annotator if a else None,
            "label_model": a.model if a else None,
            "prompt_id": a.prompt_id if a else None, "label_settings": a.settings if a else None,
            "concept_type": a.concept_type if a else None,
            "words": list(c.type_counts),
            "members": [{"word": m.word, "sentence": m.sentence, "position": m.position} for m in c.members],
            "annotations": [{**{k: v for k, v in vars(x).items() if k != "scores"},
                             "scores_json": json.dumps(x.scores) if x.scores is not None else None}
                            for x in c.annotations],
            "type_counts_json": json.dumps(c.type_counts, ensure_ascii=False),
            "alignment_json": json.dumps(c.alignment, ensure_ascii=False),
        })
    return pd.DataFrame(rows)


def write_parquet(path: Path, concepts: list[Concept], source: str | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)
    to_frame(concepts, source).to_parquet(tmp, index=False)
    tmp.replace(path)


def read_parquet(path: Path) -> list[Concept]:
    df = pd.read_parquet(path)
    out = []
    for r in df.itertuples(index=False):
        anns = []
        for a in r.annotations:
            a = dict(a)
            scores = a.pop("scores_json", None)
            anns.append(Annotation(**a, scores=json.loads(scores) if scores else None))
        out.append(Concept(
            model=r.model, layer=int(r.layer), k=int(r.k), concept_id=int(r.concept_id),
            members=[Member(str(m["word"]), int(m["sentence"]), int(m["position"])) for m in r.members],
            type_counts={k: int(v) for k, v in json.loads(r.type_counts_json).items()},
            annotations=anns, alignment=json.loads(r.alignment_json)))
    return out


def record_fields(c: Concept, source: str | None = None) -> dict:
    """The label of record and its provenance, as flat fields."""
    a = label_of_record(c, source)
    return {"label": a.label if a else None, "label_annotator": a.annotator if a else None,
            "label_model": a.model if a else None, "label_prompt": a.prompt_id if a else None,
            "label_settings": a.settings if a else None}


def write_jsonl(path: Path, concepts: list[Concept], source: str | None = None) -> None:
    """The records, each with its label of record and provenance in front."""
    atomic_write_text(Path(path), "".join(json.dumps({**record_fields(c, source), **c.to_json()}, ensure_ascii=False) + "\n"
                                          for c in concepts))


def export_dataset(root: Path, by_layer: dict[int, list[Concept]], sentences: list[list[str]], k: int,
                   hf: bool = False, source: str | None = None) -> Path:
    """Write the dataset under `root`: tcn/ (sentences.json, layer{N}/clusters-{K}.txt,
    layer{N}/labels-{K}.json), concepts-K{K}.jsonl, concepts-K{K}.parquet [, hf/]."""
    from concepts.annotation.formats.cluster_lines import write_tcn

    root = Path(root)
    write_tcn(root / "tcn", sentences, by_layer, label_of=lambda c: (a.label if (a := label_of_record(c, source)) else None))
    every = [c for layer in sorted(by_layer) for c in by_layer[layer]]
    write_jsonl(root / f"concepts-K{k}.jsonl", every, source)
    write_parquet(root / f"concepts-K{k}.parquet", every, source)
    if hf:
        import datasets

        ds = datasets.Dataset.from_pandas(to_frame(every, source).drop(columns=["annotations"]), preserve_index=False)
        ds.save_to_disk(str(root / "hf"))
    return root
