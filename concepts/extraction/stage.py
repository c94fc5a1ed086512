"""`python -m concepts.extract`: a corpus and a model in, an activation store out.

Resumable: each shard of `extraction.shard_sentences` sentences is published atomically; a
re-run skips finished shards, and on a complete store does no work. Several jobs can share
the work (`corpus.shard=i corpus.num_shards=n`); the job that finds every shard done marks
the store complete.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from concepts.core.artifacts import (
    atomic_publish_dir,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
    library_versions,
    read_manifest,
    write_manifest,
)
from concepts.core.cli import human_bytes, model_slug
from concepts.core.config import plain_config, validate
from concepts.core.confirm import confirm_large
from concepts.core.errors import UserError
from concepts.corpus import Corpus, Sentence, load_corpus
from concepts.extraction.config import ExtractConfig, LongSentences
from concepts.extraction.estimate import describe, estimate
from concepts.extraction.extractor import Extractor
from concepts.extraction.models import config_layers, load_config, load_model, weights_signature
from concepts.extraction.read_ahead import read_ahead
from concepts.extraction.sampling import TypeCounter
from concepts.extraction.store import SENTENCES, SHARDS, layer_file, shard_name
from concepts.extraction.subwords import encode_shard, skipped_sentences

log = logging.getLogger(__name__)


@dataclass
class ExtractResult:
    store: Path
    complete: bool
    shards_written: int
    words_written: int
    seconds: float  # everything, corpus and model loading included
    forward_seconds: float  # inside the model's forward pass
    loop_seconds: float = 0.0  # the shard loop: tokenize, forward, aggregate, write


def to_config(cfg: DictConfig | ExtractConfig) -> ExtractConfig:
    """Validate a composed config (types by OmegaConf, values by `__post_init__`)."""
    return validate(cfg, ExtractConfig)


def store_identity(cfg: ExtractConfig, corpus: Corpus) -> dict:
    """What determines the store's content (not batch size, device or progress)."""
    ex = cfg.extraction
    return {
        "model": cfg.model.name_or_path,
        "revision": cfg.model.revision,
        "model_files": weights_signature(cfg.model.name_or_path),  # a local model saved anew is another store
        "corpus": corpus.fingerprint,
        "aggregation": ex.aggregation.value,
        "input": ex.input.value,
        **({"layers": sorted(set(ex.layers))} if ex.layers is not None else {}),
        "dtype": ex.dtype.value,
        "store_dtype": ex.store_dtype.value,
        "max_length": ex.max_length,
        "long_sentences": ex.long_sentences.value,
    }


def store_path(cfg: ExtractConfig, corpus: Corpus) -> Path:
    name = cfg.model.name or model_slug(cfg.model.name_or_path)
    fp = fingerprint(store_identity(cfg, corpus))
    return Path(cfg.paths.workspace) / name / f"{cfg.corpus.name}-{fp[:8]}" / "activations"


def encode_and_extract(lm, extractor: Extractor, sentences: list[Sentence], max_length: int, long_sentences: str,
                       dtype: torch.dtype, progress=None, enc=None, keep: np.ndarray | None = None):
    """Tokenize `sentences` (unless `enc`, their `encode_shard` made ahead, is given) and run the
    model over them: `(enc, skipped, arrays)` with `arrays` `[n_layers, n_words, hidden]` holding
    every kept sentence's words in order (the sentences `enc.skipped` are over the limit and hold
    no row). `keep` (`[m]` sorted rows of those words): `arrays` is `[n_layers, m, hidden]`, those
    rows only; the model still reads every sentence (the same batches, so the same vectors), but
    only these words are aggregated and copied off the device. Shared by the store and
    `concepts.api.extract`."""
    if enc is None:
        enc = encode_shard(lm.tokenizer, sentences, max_length, lm.n_special, long_sentences, lm.input, lm.family)
    skipped = set(enc.skipped)
    offsets, n_rows = {}, 0
    for i, s in enumerate(sentences):
        if i not in skipped:
            offsets[i] = n_rows
            n_rows += len(s)
    if keep is not None and len(keep) and keep[-1] >= n_rows:
        raise UserError(f"a sampled row ({int(keep[-1])}) lies beyond this shard's {n_rows} words: the corpus gives "
                        "other words than when the sample was drawn")
    # each segment's owned words as rows of the shard (of `keep` when given)
    seg_rows = [offsets[s.sentence] + s.word_offset + np.flatnonzero(s.own) for s in enc.segments]
    select = None
    if keep is not None:  # searchsorted, not np.isin per segment: isin's set-up costs ~1 s per EWT pass
        pos = [np.searchsorted(keep, r) for r in seg_rows]
        select = []
        for p, r in zip(pos, seg_rows):
            hit = p < len(keep)
            hit[hit] = keep[p[hit]] == r[hit]
            select.append(hit)
        seg_rows = [p[m] for p, m in zip(pos, select)]
    by_segment = {id(s): r for s, r in zip(enc.segments, seg_rows)}
    arrays = torch.empty((len(extractor.layers), n_rows if keep is None else len(keep), lm.hidden_size), dtype=dtype)

    def sink(batch, vecs: torch.Tensor) -> None:
        rows = np.concatenate([by_segment[id(s)] for s in batch])
        arrays.index_copy_(1, torch.from_numpy(rows), vecs.to(dtype))

    extractor.run(enc.segments, sink, progress, select)
    return enc, skipped, arrays


def _encode_for_store(lm, ex, sentences: list[Sentence]):
    """`encode_shard` of a store's sentences with its length settings (`ex`: `cfg.extraction`)."""
    return encode_shard(lm.tokenizer, sentences, ex.max_length or lm.max_length, lm.n_special, ex.long_sentences.value,
                        lm.input, lm.family)


def _skipped_for_store(lm, ex, sentences: list[Sentence]) -> set[int]:
    """The sentences the store will not hold (over the model's limit; in window mode, a word longer
    than a window): `_encode_for_store(...).skipped`, from subword counts (`skipped_sentences`)."""
    return set(skipped_sentences(lm.tokenizer, sentences, ex.max_length or lm.max_length, lm.n_special,
                                 ex.long_sentences.value, lm.input, lm.family))


def token_table(sentences: list[Sentence], skipped: set[int], enc) -> pd.DataFrame:
    kept = [i for i in range(len(sentences)) if i not in skipped]
    lengths = np.array([len(sentences[i]) for i in kept], dtype=np.int64)
    cols: dict[str, object] = {
        "sentence": np.repeat(np.array([sentences[i].index for i in kept], dtype=np.int64), lengths),
        "position": (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32),
        "word": [w for i in kept for w in sentences[i].words],
        # (a shard whose sentences were all skipped has an empty table, not a crash)
        "n_subwords": np.concatenate([enc.n_subwords[i] for i in kept] or [np.zeros(0)]).astype(np.int32),
        "replaced": np.concatenate([enc.replaced[i] for i in kept] or [np.zeros(0)]).astype(bool),
        "shared": np.concatenate([enc.shared[i] for i in kept] or [np.zeros(0)]).astype(bool),
    }
    for t in sorted({t for s in sentences for t in s.tags}):
        cols[t] = [v for i in kept for v in sentences[i].tags.get(t, [""] * len(sentences[i]))]
    return pd.DataFrame(cols)


def _write_shard(
    lm, extractor: Extractor, cfg: ExtractConfig, sentences: list[Sentence], final: Path, bar,
    keep: np.ndarray | None = None, enc=None,
) -> tuple[dict, Callable[[], None]]:
    """Compute one shard into its temp folder; return its counts and the function that
    finishes it (token table, meta, atomic publish). `keep`: `[m]` the shard's word rows to store
    (a sampled store), else every word."""
    ex = cfg.extraction
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    def progress(words: int, subwords: int) -> None:
        if bar is not None:
            bar.update(words)
            elapsed = max(time.perf_counter() - extractor.timing.started, 1e-9)
            bar.set_postfix_str(f"{extractor.timing.subwords / elapsed:,.0f} subword/s", refresh=False)

    # filled in memory, saved on the writer thread while the next shard computes, and the
    # shard folder published by one rename once it is whole
    try:  # `enc`: tokenized ahead, else here
        enc, skipped, arrays = encode_and_extract(lm, extractor, sentences, ex.max_length or lm.max_length,
                                                  ex.long_sentences.value, getattr(torch, ex.store_dtype.value), progress,
                                                  enc, keep)
    except UserError as e:
        raise UserError(f"{final}: {e}; delete {final.parent.parent} and re-run") from None
    kept = [i for i in range(len(sentences)) if i not in skipped]
    table = token_table(sentences, skipped, enc)
    if keep is not None:  # the forward pass ran as for a full store (same batches, same vectors)
        table = table.iloc[keep].reset_index(drop=True)
    meta = {
        "sentences": len(kept),
        "words": arrays.shape[1],
        "subwords": int(sum(enc.n_subwords[i].sum() for i in kept)),
        "sentences_skipped_subword_limit": len(skipped),
        "skipped_sentence_ids": sorted(sentences[i].index for i in skipped),
        "words_replaced_empty": int(sum(enc.replaced[i].sum() for i in kept)),
        "words_shared_subword": int(sum(enc.shared[i].sum() for i in kept)),
        "sentences_windowed": len({s.sentence for s in enc.segments if s.word_offset > 0}),
    }

    def save() -> None:  # runs on the writer thread while the next shard computes
        try:
            for j, layer in enumerate(extractor.layers):
                np.save(tmp / layer_file(layer), arrays[j].numpy())
            table.to_parquet(tmp / "tokens.parquet", index=False)
            atomic_write_json(tmp / "meta.json", meta)
        except BaseException:  # a full disk, say: no partial shard stays behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_publish_dir(tmp, final)

    if bar is not None:  # skipped sentences' words count as done
        bar.update(sum(len(sentences[i]) for i in skipped))
    return meta, save


def _lock_shard(path: Path, k: int, wait: bool):
    """An exclusive lock on shard k (a `flock` on `shards/shard-k.lock`), so concurrent jobs
    never write the same shard; None when another job holds it and `wait` is false."""
    (path / SHARDS).mkdir(parents=True, exist_ok=True)
    fh = open(path / SHARDS / f"{shard_name(k)}.lock", "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _then_unlock(save: Callable[[], None], lock) -> None:
    try:
        save()
    finally:
        lock.close()


def _same_store_other_mode(cfg: ExtractConfig, corpus: Corpus, sample) -> Path | None:
    """A complete store made with another `extraction.long_sentences` mode in which no sentence
    was over the model's limit (none skipped, none windowed): it holds exactly the vectors this
    mode would compute. For a sampled store, the full store of that mode serves too."""
    for other in LongSentences:
        if other == cfg.extraction.long_sentences:
            continue
        ocfg = replace(cfg, extraction=replace(cfg.extraction, long_sentences=other))
        full_ident = store_identity(ocfg, corpus)
        full_path = store_path(ocfg, corpus)
        candidates = [(full_path, fingerprint(full_ident))]
        if sample is not None:
            ident = sampled_identity(full_ident, sample)
            candidates.append((full_path.parent / f"sampled-{fingerprint(ident)[:8]}", fingerprint(ident)))
        for path, fp in candidates:
            m = read_manifest(path)
            if m and m.get("complete") and m.get("fingerprint") == fp:
                counts = m.get("counts", {})
                if not counts.get("sentences_skipped_subword_limit") and not counts.get("sentences_windowed"):
                    return path
    return None


def _finalize(path: Path, manifest: dict, n_shards: int) -> dict | None:
    """Mark the store complete when every shard is; return the store's counts, else None."""
    root = path / SHARDS
    metas = [json.loads((root / shard_name(k) / "meta.json").read_text()) for k in range(n_shards)
             if (root / shard_name(k) / "meta.json").exists()]
    if len(metas) < n_shards:
        return None
    # one counter per skip reason: the corpus reader's word limit (sentences_skipped_word_limit,
    # corpus.max_sentence_length) and the model's subword limit here (shards written before the
    # rename call it sentences_skipped_too_long)
    counts = {k: sum(m.get(k, m.get("sentences_skipped_too_long", 0) if k == "sentences_skipped_subword_limit" else 0)
                     for m in metas)
              for k in ("sentences", "words", "subwords", "sentences_skipped_subword_limit", "words_replaced_empty",
                        "words_shared_subword", "sentences_windowed")}
    manifest = {**manifest, "complete": True, "counts": {**manifest["counts"], **counts}}
    write_manifest(path, manifest)
    for lock in root.glob("*.lock"):  # every shard is published: the shard locks have served
        lock.unlink(missing_ok=True)
    if counts["sentences_skipped_subword_limit"]:
        log.warning("%d sentences exceeded the model's input limit and were skipped (extraction.long_sentences=skip)",
                    counts["sentences_skipped_subword_limit"])
    return counts


def sentence_lines(sentences: Iterable[Sentence]) -> Iterator[str]:
    """The lines of a store's `sentences.jsonl`."""
    for s in sentences:
        yield json.dumps(s.to_json(), ensure_ascii=False) + "\n"


def _sample_rows(lm, cfg: ExtractConfig, corpus: Corpus, step: int, sample, path: Path):
    """The rows a full store would hold that discovery samples: `(rows [m], shard_offsets [n_shards + 1],
    stats)`, rows numbered as in the full store. Sentences over the model's limit are found by
    tokenizing (`skipped_sentences`, no forward pass); the draw is `sampling.sample_tokens` over the words in store
    order. Kept in `rows.npy` and `sample.json` beside the store, so a resumed run keeps them; the
    store's `sentences.jsonl` is written from the same pass."""
    if (path / "rows.npy").exists() and (path / "sample.json").exists():
        info = json.loads((path / "sample.json").read_text())
        return np.load(path / "rows.npy", allow_pickle=False), np.array(info["shard_offsets"]), info["stats"]
    ex = cfg.extraction
    types = TypeCounter(sample.lowercase)  # one int32 per word, not the words
    offsets = [0]
    n = corpus.n_sentences
    sent_file = path / SENTENCES

    def count_pass():  # yields the store's sentences.jsonl lines: written from this pass, not another one
        # the shards are read and tokenized a shard ahead, on a thread
        with closing(read_ahead(corpus.shards(step), lambda item: _skipped_for_store(lm, ex, item[1]),
                                name="count-ahead")) as ahead:
            for (_, sents), skipped in tqdm(ahead, total=-(-n // step), desc="count words", unit="shard",
                                            disable=not ex.progress):
                stored = [s for i, s in enumerate(sents) if i not in skipped]
                for s in stored:
                    types.add(s.words)
                offsets.append(offsets[-1] + sum(len(s) for s in stored))
                yield from sentence_lines(sents)

    if sent_file.exists():
        for _ in count_pass():
            pass
    else:
        atomic_write_text(sent_file, count_pass())
    rows, st = types.sample(sample.min_count, sample.max_per_type, sample.seed)
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(path / "rows.npy", rows)
    atomic_write_json(path / "sample.json", {"stats": asdict(st), "shard_offsets": offsets})
    log.info("sampling kept %d of %d words (%d word types); only these are extracted", len(rows), offsets[-1], st.types_kept)
    return rows, np.array(offsets), asdict(st)


def check_k_fits(cfg, corpus: Corpus) -> None:
    """Before an extraction for a discovery, check that the corpus can give K sampled tokens at
    all, from word counts alone: at most
    sum(min(count, max_per_type)) over types seen min_count times (sentences over the model's
    limit only lower it)."""
    from collections import Counter

    s, k = cfg.sampling, cfg.discovery.k
    counts = Counter(w.lower() if s.lowercase else w for sent in corpus.iter_sentences() for w in sent.words)
    most = sum(min(c, s.max_per_type) for c in counts.values() if c >= s.min_count)
    if most == 0:
        raise UserError(f"sampling kept no token of this corpus ({corpus.n_sentences:,} sentences): no word is seen "
                        f"sampling.min_count={s.min_count} times; lower sampling.min_count or use more sentences")
    if most < k:
        raise k_unreachable(cfg, corpus, most)


def k_unreachable(cfg, corpus: Corpus, most: int) -> UserError:
    """The error for a `discovery.k` above the `most` sampled tokens this corpus gives."""
    s, k = cfg.sampling, cfg.discovery.k
    return UserError(
        f"discovery.k={k} cannot be reached: this corpus ({corpus.n_sentences:,} sentences) gives at most "
        f"{most:,} sampled tokens at sampling.min_count={s.min_count} and sampling.max_per_type={s.max_per_type}. "
        f"Set discovery.k to at most {most}, lower sampling.min_count, or use more sentences (corpus.max_sentences)"
    )


def sampled_identity(ident: dict, sample) -> dict:
    """A sampled store's identity: the full store's and the sampling settings."""
    return {**ident, "sample": asdict(sample)}


def run(cfg: DictConfig | ExtractConfig, check_k: bool = False, sample=None) -> ExtractResult:
    """Extract word representations of every layer into the activation store (`check_k`: run for
    a discovery, so first check the corpus can give `discovery.k` sampled tokens).

    `sample` (a `SamplingConfig`): store only the tokens discovery samples with these settings
    (a sibling folder `sampled-<fp>` of the full store's `activations`), unless a complete store of
    every word exists, which is then returned. The rows are drawn from the word counts before any
    vector is computed, by the same rule and seed as discovery's, so the concepts are the same."""
    t_start = time.perf_counter()
    cfg = to_config(cfg)
    corpus = load_corpus(cfg.corpus)
    path = store_path(cfg, corpus)
    ident = store_identity(cfg, corpus)
    fp = full_fp = fingerprint(ident)

    def done(where: Path) -> ExtractResult:
        return ExtractResult(where, True, 0, 0, time.perf_counter() - t_start, 0.0)

    if sample is not None:
        full = read_manifest(path)
        if full is not None and full.get("complete") and full.get("fingerprint") == fp:
            log.info("a complete store of every word exists; discovery samples from it: %s", path)
            return done(path)
        ident = sampled_identity(ident, sample)
        fp = fingerprint(ident)
        path = path.parent / f"sampled-{fp[:8]}"
    existing = read_manifest(path)
    if existing is not None and existing.get("fingerprint") != fp:
        raise UserError(f"{path} holds a store with another fingerprint; delete it or use another paths.workspace")
    # the layout of a store that exists wins (extraction.shard_sentences does not change the vectors)
    step = int(existing["config"]["extraction"]["shard_sentences"]) if existing is not None else cfg.extraction.shard_sentences
    if step != cfg.extraction.shard_sentences:
        log.info("the store at %s has shards of %d sentences; extraction.shard_sentences=%d applies to new stores",
                 path, step, cfg.extraction.shard_sentences)
    n_shards = -(-corpus.n_sentences // step)
    mine = [k for k in range(n_shards) if k % cfg.corpus.num_shards == cfg.corpus.shard]
    todo = [k for k in mine if not (path / SHARDS / shard_name(k) / "meta.json").exists()]
    if existing is not None and existing.get("complete") and not todo:
        log.info("activation store is complete, nothing to do: %s", path)
        return done(path)
    if existing is None:
        same = _same_store_other_mode(cfg, corpus, sample)
        if same is not None:
            log.info("no sentence of this corpus is over the model's limit, so extraction.long_sentences=%s changes "
                     "nothing: using the complete store %s", cfg.extraction.long_sentences.value, same)
            return done(same)
        _check_before_weights(cfg, corpus, check_k, sample)
    lm = load_model(cfg.model, cfg.extraction.device, cfg.extraction.dtype.value, cfg.extraction.input.value,
                    cfg.extraction.progress)
    _check_model_takes(cfg, lm)
    rows = shard_offsets = sample_stats = None
    if sample is not None:  # which rows to keep, from word counts and the model's length limit alone
        rows, shard_offsets, sample_stats = _draw_sample(lm, cfg, corpus, step, sample, path, check_k)
    manifest = _new_manifest(cfg, corpus, lm, ident, fp, step, n_shards)
    if sample is not None:
        manifest.update(sample=asdict(sample), source_fingerprint=full_fp, sample_stats=sample_stats)
    kept = lm.n_layers if cfg.extraction.layers is None else len(set(cfg.extraction.layers))
    if existing is None:
        _announce_new_store(cfg, corpus, lm, path, rows, kept)
        write_manifest(path, manifest)
    sent_file = path / SENTENCES
    if not sent_file.exists():  # (a sampled store wrote it in its count pass)
        atomic_write_text(sent_file, sentence_lines(corpus.iter_sentences()))
    log.info("extracting %d of %d shards into %s (%d of %d layers, %d-d, %s, input=%s)", len(todo), n_shards, path,
             kept, lm.n_layers, lm.hidden_size, cfg.extraction.aggregation.value, cfg.extraction.input.value)
    writer = _ShardWriter(lm, cfg, path, rows, shard_offsets,
                          total_words=int(sum(corpus.lengths[k * step : (k + 1) * step].sum() for k in todo)))
    t_loop = time.perf_counter()
    writer.write_all(corpus, step, todo)
    loop_s = time.perf_counter() - t_loop
    counts = _finalize(path, manifest, n_shards)
    took = time.perf_counter() - t_start
    forward_s = writer.extractor.timing.forward_s
    if counts is not None:
        log.info("activation store complete: %s (%d words, %.1f s, forward pass %.1f s)", path, counts["words"], took, forward_s)
    else:
        log.info("this job's shards are done; the store completes when every job has run: %s", path)
    return ExtractResult(path, counts is not None, writer.written, writer.words, took, forward_s, loop_s)


def _draw_sample(lm, cfg: ExtractConfig, corpus, step: int, sample, path: Path, check_k: bool):
    """The sampled store's rows [n] (of the full store), per-shard row offsets and sampling stats;
    an error when nothing is kept, or (for a discovery) fewer than K tokens."""
    rows, shard_offsets, sample_stats = _sample_rows(lm, cfg, corpus, step, sample, path)
    if len(rows) == 0:
        raise UserError(f"sampling kept no token of corpus {cfg.corpus.name}; lower sampling.min_count "
                        f"(now {sample.min_count})")
    if check_k and len(rows) < cfg.discovery.k:  # the count pass gave the exact sample: no other pass checks K
        raise k_unreachable(cfg, corpus, len(rows))
    return rows, shard_offsets, sample_stats


def _new_manifest(cfg: ExtractConfig, corpus, lm, ident: dict, fp: str, step: int, n_shards: int) -> dict:
    """The store's manifest before any shard is written (complete: false); `fp` is the fingerprint of `ident`."""
    rec = plain_config(cfg)
    return {
        "stage": "extract",
        "complete": False,
        "fingerprint": fp,
        "identity": ident,
        "config": {**rec, "extraction": {**rec["extraction"], "shard_sentences": step}},
        "inputs": {"corpus_files": corpus.files, "corpus_fingerprint": corpus.fingerprint, "model_source": lm.source},
        "versions": library_versions(),
        "n_layers": lm.n_layers,
        **({"layers": sorted(set(cfg.extraction.layers))} if cfg.extraction.layers is not None else {}),
        "hidden_size": lm.hidden_size,
        "max_length": cfg.extraction.max_length or lm.max_length,
        "n_shards": n_shards,
        "store_dtype": cfg.extraction.store_dtype.value,
        "counts": dict(corpus.stats),
    }


def _check_before_weights(cfg: ExtractConfig, corpus, check_k: bool, sample) -> None:
    """For a new store, before any weights load: K against the corpus (for a discovery), the
    layers against the model's config, and what the store and the model will take."""
    if check_k and sample is None:
        check_k_fits(cfg, corpus)  # a discovery that cannot run says so now
    config_layers(cfg.model, cfg.extraction.layers)
    if sample is None:
        ex = cfg.extraction
        needs = estimate(load_config(cfg.model), corpus.n_words, ex.layers, ex.store_dtype.value, ex.dtype.value,
                         ex.max_batch_tokens)
        log.info("%s", describe(needs, human_bytes))


def _check_model_takes(cfg: ExtractConfig, lm) -> None:
    """extraction.layers and extraction.max_length against the loaded model."""
    if cfg.extraction.layers is not None and max(cfg.extraction.layers) >= lm.n_layers:
        raise UserError(f"extraction.layers={list(cfg.extraction.layers)}: {cfg.model.name_or_path} has layers "
                        f"0..{lm.n_layers - 1} (0 = embeddings)")
    if cfg.extraction.max_length is not None and cfg.extraction.max_length > lm.max_length:
        raise UserError(
            f"extraction.max_length={cfg.extraction.max_length} is beyond what {cfg.model.name_or_path} takes "
            f"({lm.max_length} subwords, special tokens included); set at most {lm.max_length} or null for the model's limit"
        )


def _announce_new_store(cfg: ExtractConfig, corpus, lm, path: Path, rows, kept: int) -> None:
    """Say what a new store of `kept` layers will take, ask first above extraction.confirm_above_gb,
    and stop when the disk cannot hold it."""
    words = corpus.n_words if rows is None else len(rows)
    gb = words * kept * lm.hidden_size * (2 if cfg.extraction.store_dtype.value != "float32" else 4) / 1e9
    what = (f"a new {'sampled ' if rows is not None else ''}activation store: {corpus.n_sentences:,} sentences, "
            f"{words:,} {'sampled ' if rows is not None else ''}words x {kept} layers x "
            f"{lm.hidden_size} ({cfg.extraction.store_dtype.value}), about {gb:.3g} GB on disk")
    log.info("%s, in %s", what, path)
    if rows is None:  # the way out for a corpus too large to store whole
        what += (" (concepts alone need only the sampled tokens: pipeline.store=sampled for the pipeline, "
                 "discovery.extract=sampled for concepts.discover)")
    confirm_large(what, gb, cfg.extraction.confirm_above_gb, "extraction.confirm_above_gb")
    free = shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free
    if gb * 1e9 > free:
        raise UserError(f"the new activation store needs about {human_bytes(gb * 1e9)} in {path}, but only "
                        f"{human_bytes(free)} are free on that disk; free space, set paths.workspace=<a larger disk>, or store less "
                        "(pipeline.store=sampled, extraction.store_dtype=float16)")


class _ShardWriter:
    """Writes this job's shards: one pass over the corpus (a streamed corpus is never held whole);
    ahead, the next shard is read and tokenized on a thread while this one runs through the model,
    and a finished shard is saved on another thread while the next one runs."""

    def __init__(self, lm, cfg: ExtractConfig, path: Path, rows, shard_offsets, total_words: int):
        self.lm, self.cfg, self.path = lm, cfg, path
        self.rows, self.shard_offsets = rows, shard_offsets
        ex = cfg.extraction
        on_cpu = next(lm.model.parameters()).device.type == "cpu"
        self.extractor = Extractor(lm, ex.aggregation.value, ex.batch_size or (16 if on_cpu else 64), ex.max_batch_tokens,
                                   getattr(torch, ex.store_dtype.value), ex.cudnn_attention,
                                   sorted(set(ex.layers)) if ex.layers is not None else None)
        # on an accelerator the CPU is idle during the forward pass; on a CPU it is not
        self.ahead = ex.tokenize_ahead if ex.tokenize_ahead is not None else not on_cpu
        self.bar = tqdm(total=total_words, unit="word", unit_scale=True, desc="extract", smoothing=0.1,
                        disable=not ex.progress)
        self.words = self.written = 0
        self.pending: Future | None = None
        self.saver: ThreadPoolExecutor | None = None

    def write_all(self, corpus, step: int, todo: list[int]) -> None:
        shards = corpus.shards(step, set(todo))
        prepared = (read_ahead(shards, lambda item: _encode_for_store(self.lm, self.cfg.extraction, item[1]),
                               name="tokenize-ahead")
                    if self.ahead else ((item, None) for item in shards))
        with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as self.saver, closing(prepared)):
            try:
                # shards another job is writing now are left for last, then waited for
                deferred = [k for (k, sents), enc in prepared if not self.shard(k, sents, wait=False, enc=enc)]
                for k, sents in corpus.shards(step, set(deferred)) if deferred else []:
                    self.shard(k, sents, wait=True)
                if self.pending is not None:
                    self.pending.result()
            finally:
                self.bar.close()

    def shard(self, k: int, sents: list[Sentence], wait: bool, enc=None) -> bool:
        """Write shard k unless another job holds it (False) or has finished it."""
        lock = _lock_shard(self.path, k, wait)
        if lock is None:
            return False
        final = self.path / SHARDS / shard_name(k)
        if (final / "meta.json").exists():  # another job finished it meanwhile
            lock.close()
            self.bar.update(sum(len(s) for s in sents))
            return True
        keep = None
        if self.rows is not None:  # this shard's sampled rows, numbered within the shard
            lo, hi = self.shard_offsets[k], self.shard_offsets[k + 1]
            keep = self.rows[(self.rows >= lo) & (self.rows < hi)] - lo
        meta, save = _write_shard(self.lm, self.extractor, self.cfg, sents, final, self.bar, keep, enc)
        if self.pending is not None:
            self.pending.result()  # at most one shard waits for the disk
        self.pending = self.saver.submit(_then_unlock, save, lock)
        self.words += meta["words"]
        self.written += 1
        return True
