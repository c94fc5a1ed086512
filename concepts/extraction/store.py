"""The activation store: per-layer word vectors in shards, a token table and the sentences.

Layout of a store folder:

    manifest.json            stage manifest (config, fingerprint, counts, complete flag)
    rows.npy, sample.json    a sampled store only (`sampled-<fp>/`, made for discovery): the full-store
                             row of each stored token, the sampling counts and shard offsets
    sentences.jsonl          every corpus sentence after filtering (words, gold tags)
    shards/shard-00000/      one folder per `shard_sentences` sentences, published atomically
        layer_00.npy ...     float32/float16 `[n_words_in_shard, hidden]`, one per layer
        tokens.parquet       sentence, position, word, n_subwords, replaced, shared, gold tags
        meta.json            counts for this shard

`ActivationStore` reads it: `store.layer(l)` is a memory-mapped view over all shards,
`store.tokens()` the token table (row i of the table is row i of every layer array).
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from concepts.core.artifacts import read_manifest
from concepts.core.errors import UserError
from concepts.corpus import Sentence

SHARDS = "shards"
SENTENCES = "sentences.jsonl"


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def layer_file(layer: int) -> str:
    return f"layer_{layer:02d}.npy"


def row_index(tokens: pd.DataFrame) -> dict[tuple[int, int], int]:
    """(sentence, position) -> row of a token table (the row of every layer array)."""
    return {(s, p): i for i, (s, p) in enumerate(zip(tokens["sentence"].to_numpy().tolist(),
                                                     tokens["position"].to_numpy().tolist()))}


class LayerArray:
    """A read-only `[n_tokens, hidden]` array over memory-mapped shard files.

    Supports `len`, `.shape`, `.dtype`, integer / slice / index-array row selection and
    `np.asarray(...)` (which reads it whole). Only the rows asked for are read.
    """

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]), parts[0].shape[1])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            i = int(idx) + (len(self) if idx < 0 else 0)
            k = int(np.searchsorted(self.offsets, i, side="right") - 1)
            return np.asarray(self.parts[k][i - self.offsets[k]])
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        idx = np.where(idx < 0, idx + len(self), idx)
        out = np.empty((len(idx), self.shape[1]), dtype=self.dtype)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        for k in np.unique(shard):
            sel = shard == k
            out[sel] = self.parts[k][idx[sel] - self.offsets[k]]
        return out

    def __array__(self, dtype=None, copy=None):
        arr = np.concatenate([np.asarray(p) for p in self.parts])
        return arr.astype(dtype) if dtype is not None else arr


def _damaged(f: Path, why) -> UserError:
    """A damaged shard file: what is wrong, and the repair (rewrite that shard alone)."""
    if isinstance(why, FileNotFoundError):
        what = "is missing"
    elif isinstance(why, BaseException):
        what = f"cannot be read ({str(why).splitlines()[0] if str(why) else type(why).__name__})"
    else:
        what = f"has {why}"
    return UserError(f"{f} {what}; delete the folder {f.parent} and re-run concepts.extract with the same config "
                     "to rewrite it")


class ActivationStore:
    """Reader for a complete activation store folder."""

    def __init__(self, path: str | Path, allow_incomplete: bool = False):
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise UserError(f"{self.path} is not an activation store (no manifest.json); run concepts.extract first")
        if manifest.get("stage") != "extract":
            raise UserError(f"{self.path} holds the output of concepts.{manifest.get('stage')}, not an activation store")
        if not manifest.get("complete") and not allow_incomplete:
            done = len(self.shard_dirs())
            raise UserError(
                f"activation store {self.path} is incomplete ({done} of {manifest.get('n_shards')} shards); "
                "re-run concepts.extract with the same config to finish it"
            )
        self.manifest = manifest
        self._rows: dict[Path, int] = {}  # words per shard, from meta.json

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def source_fingerprint(self) -> str:
        """The fingerprint of the store of every word this one was drawn from (its own for a full store)."""
        return self.manifest.get("source_fingerprint", self.manifest["fingerprint"])

    @cached_property
    def sample_rows(self) -> np.ndarray | None:
        """A sampled store: `[n_tokens]` the row of each of its tokens in the full store; None for a full store."""
        if not self.manifest.get("sample"):
            return None
        f = self.path / "rows.npy"
        try:
            rows = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise _damaged(f, e) from None
        if len(rows) != sum(self._shard_rows(d) for d in self.shard_dirs()):
            raise _damaged(f, "does not match the shards' token counts")
        return rows

    @property
    def n_layers(self) -> int:
        return int(self.manifest["n_layers"])

    @property
    def layers(self) -> list[int]:
        """The layers this store holds (0 = embeddings): all, unless made with `extraction.layers`."""
        return [int(x) for x in self.manifest.get("layers") or range(self.n_layers)]

    @property
    def hidden_size(self) -> int:
        return int(self.manifest["hidden_size"])

    def shard_dirs(self) -> list[Path]:
        root = self.path / SHARDS
        return sorted(p for p in root.glob("shard-?????") if (p / "meta.json").exists()) if root.exists() else []

    def layer(self, layer: int) -> LayerArray:
        """The `[n_tokens, hidden]` vectors of one layer (0 = embeddings), memory-mapped."""
        if layer not in self.layers:
            if not 0 <= layer < self.n_layers:
                raise UserError(f"layer {layer} does not exist: this store has layers 0..{self.n_layers - 1}")
            raise UserError(f"layer {layer} is not in this store: it was made with extraction.layers="
                            f"[{','.join(map(str, self.layers))}]; extract again with that layer to use it")
        return LayerArray([self._load_shard_layer(d, layer) for d in self.shard_dirs()])

    def _shard_rows(self, shard: Path) -> int:
        """Words in a shard, from its meta.json (read once per shard)."""
        if shard not in self._rows:
            try:
                self._rows[shard] = int(json.loads((shard / "meta.json").read_text(encoding="utf-8"))["words"])
            except (ValueError, OSError, KeyError, TypeError) as e:
                raise _damaged(shard / "meta.json", e) from None
        return self._rows[shard]

    def _load_shard_layer(self, shard: Path, layer: int) -> np.ndarray:
        """One shard's `[n_words, hidden]` array, checked against the shard's meta.json: a truncated
        or replaced file is a `UserError` naming it, never a wrong array."""
        f = shard / layer_file(layer)
        rows = self._shard_rows(shard)
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # FileNotFoundError included
            raise _damaged(f, e) from None
        if arr.ndim != 2 or arr.shape != (rows, self.hidden_size):
            raise _damaged(f, f"shape {arr.shape}, expected ({rows}, {self.hidden_size})")
        return arr

    @cached_property
    def _tokens(self) -> pd.DataFrame:
        parts = []
        for d in self.shard_dirs():
            try:
                parts.append(pd.read_parquet(d / "tokens.parquet"))
            except Exception as e:  # pyarrow raises several types for a damaged file
                raise _damaged(d / "tokens.parquet", e) from None
        return pd.concat(parts, ignore_index=True)

    def tokens(self) -> pd.DataFrame:
        """The token table; row i describes row i of every layer array."""
        return self._tokens

    def rows(self, **filters) -> np.ndarray:
        """Row indices whose token-table columns equal the given values (or lie in a given
        list), e.g. `store.rows(upos=["NOUN", "VERB"])`."""
        df = self._tokens
        mask = np.ones(len(df), dtype=bool)
        for col, val in filters.items():
            if col not in df.columns:
                raise UserError(f"token table has no column {col!r}; columns: {', '.join(df.columns)}")
            vals = val if isinstance(val, (list, tuple, set)) else [val]
            mask &= df[col].isin(vals).to_numpy()
        return np.flatnonzero(mask)

    def sentences(self) -> list[Sentence]:
        with open(self.path / SENTENCES, encoding="utf-8") as fh:
            return [Sentence.from_json(json.loads(line)) for line in fh]

    def sentence_words(self) -> list[list[str]]:
        """Every sentence's words, `[n_sentences]` lists in store order, without the tags: what the
        explorer, the annotators and the dataset need. Read as a stream, with each word string
        interned, so millions of words hold one string per word type."""
        intern = sys.intern
        with open(self.path / SENTENCES, encoding="utf-8") as fh:
            return [[intern(w) for w in json.loads(line)["words"]] for line in fh]
