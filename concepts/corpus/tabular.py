"""Sentences from a table with a tokens column: a Hugging Face `datasets` dataset (hub name
or a folder saved with `save_to_disk`) or a local JSON lines / Parquet / CSV file.

Tag columns hold one value per token; integer tags with a `ClassLabel` feature are mapped to
their names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from concepts.core.errors import UserError
from concepts.corpus.sentence import Sentence

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _rows_from_local(path: Path) -> tuple[Iterator[dict[str, Any]], dict[str, list[str]]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        def gen():
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as e:
                            raise UserError(f"{path}:{lineno}: not a JSON object: {e.msg}") from None
        return gen(), {}
    if suffix in (".parquet", ".csv"):
        import pandas as pd

        df = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        if suffix == ".csv":
            for col in df.columns:  # CSV cells hold JSON lists
                df[col] = [json.loads(v) if isinstance(v, str) and v.startswith("[") else v for v in df[col]]
        return (dict(r) for r in df.to_dict(orient="records")), {}
    raise UserError(
        f"{path}: unknown table format {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)} "
        "or a dataset folder saved with datasets' save_to_disk"
    )


def _rows_from_datasets(name: str, split: str, config_name: str | None):
    try:
        import datasets
    except ImportError:
        raise UserError("reading a Hugging Face dataset needs `pip install datasets`") from None
    path = Path(name)
    try:
        if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise UserError(f"dataset {name} has splits {list(ds)}, not {split!r} (corpus.splits)")
                ds = ds[split]
        else:
            ds = datasets.load_dataset(name, config_name, split=split)
    except UserError:
        raise
    except Exception as e:  # the datasets library raises many types for a missing dataset
        raise UserError(f"cannot load dataset {name!r} split {split!r}: {e}") from None
    names: dict[str, list[str]] = {}
    for col, feat in ds.features.items():
        inner = getattr(feat, "feature", None)
        if inner is not None and hasattr(inner, "names"):
            names[col] = list(inner.names)
    return iter(ds), names


def read_table(
    path: str,
    tokens_column: str = "tokens",
    tag_columns: Sequence[str] = (),
    split: str = "train",
    config_name: str | None = None,
) -> Iterator[Sentence]:
    p = Path(path)
    if p.is_file():
        rows, label_names = _rows_from_local(p)
    else:
        rows, label_names = _rows_from_datasets(path, split, config_name)
    for i, row in enumerate(rows):
        where = f"{p.name}:row {i}"
        if tokens_column not in row:
            raise UserError(
                f"{where}: no column {tokens_column!r} (corpus.tokens_column); columns are {sorted(row)}"
            )
        words = [str(w) for w in row[tokens_column]]
        tags = {}
        for col in tag_columns:
            if col not in row:
                raise UserError(f"{where}: no tag column {col!r} (corpus.tag_columns)")
            vals = list(row[col])
            if len(vals) != len(words):
                raise UserError(f"{where}: column {col!r} has {len(vals)} values for {len(words)} tokens")
            names = label_names.get(col)
            tags[col] = [names[v] if names is not None else str(v) for v in vals]
        if words:
            yield Sentence(words, tags, source=where, sent_id=str(row.get("id", i)), split=split)
