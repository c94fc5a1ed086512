"""`python -m concepts.discover`: latent concepts per layer by Ward clustering.

Reads (or first runs) the extraction of the same model and corpus, samples tokens, clusters
each selected layer, cuts the tree at K, writes concept records with their alignment to
human-defined tag sets, an alignment table and plot. Layers are resumable units; the merge
tree is kept, so another K is a cut, not a re-run.

Output: `<workspace>/<model>/<corpus>-<fp>/concepts/<method>-<fp>/`
    manifest.json, sample.npy (token rows clustered),
    layer_NN/linkage.npy (+ assign.npy for kmeans_ward), layer_NN/concepts-K{K}.jsonl,
    layer_NN/alignment-K{K}.json, alignment-K{K}.csv, alignment-K{K}.png, explorer-K{K}.html
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

import concepts.extraction.stage as extract_stage
from concepts.core.artifacts import (
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
    library_versions,
    read_manifest,
    unique_tmp,
    write_manifest,
)
from concepts.core.config import validate
from concepts.core.errors import UserError
from concepts.core.locks import unit_lock
from concepts.discovery.alignment import AlignmentSummary, align
from concepts.discovery.clustering import Clustering, cluster
from concepts.discovery.config import DiscoverConfig
from concepts.discovery.explorer import write_explorer
from concepts.discovery.records import Concept, Member, read_concepts, views_source, write_concepts
from concepts.discovery.tagsets import compute_tag_sets, resource_identity
from concepts.extraction.models import config_layers
from concepts.extraction.sampling import sample_tokens
from concepts.extraction.store import ActivationStore

log = logging.getLogger(__name__)


@dataclass
class DiscoverResult:
    path: Path
    store: Path
    layers: list[int]
    k: int
    alignment: pd.DataFrame  # one row per (layer, tag set)
    seconds: float
    cluster_seconds: float = 0.0  # of `seconds`, in the clustering itself (0 for layers reused)


def open_store(cfg: DiscoverConfig, for_discovery: bool = False) -> ActivationStore:
    """The store named by `discovery.store`, else the one `concepts.extract` makes for this
    config (run now if missing or partial; `for_discovery`: first check that the corpus can give
    `discovery.k` sampled tokens)."""
    explicit = getattr(cfg.discovery, "store", None)
    if explicit:
        store = ActivationStore(explicit)
        if store.manifest["identity"]["model"] != cfg.model.name_or_path:
            raise UserError(
                f"the store {explicit} holds {store.manifest['identity']['model']!r}, not model.name_or_path="
                f"{cfg.model.name_or_path!r}; pass the matching model or re-run concepts.extract"
            )
        return store
    if for_discovery:  # the layers asked for, against the model's config, before any extraction
        held = config_layers(cfg.model, cfg.extraction.layers)
        if held is not None:
            cfg.discovery.layer_list(held)
    sample = cfg.sampling if for_discovery and cfg.discovery.extract == "sampled" else None
    return ActivationStore(extract_stage.run(cfg, check_k=for_discovery, sample=sample).store)


def clustering_identity(store: ActivationStore, cfg: DiscoverConfig) -> dict:
    """What determines the sample and the merge trees (not K, which is a cut of the tree)."""
    cl = cfg.clustering
    method: dict = {"method": cl.method}  # exact Ward (ours or scipy's) has no free setting
    if cl.method == "kmeans_ward":
        method.update(seed=cl.seed, micro_clusters=cl.micro_clusters, kmeans="faiss", kmeans_iters=cl.kmeans_iters)
    elif cl.method == "kmeans":
        method.update(seed=cl.seed)
    # a sampled store and the store of every word it was drawn from give the same concepts
    return {"store": store.source_fingerprint, "sampling": asdict(cfg.sampling), "clustering": method}


def concepts_path(store: ActivationStore, cfg: DiscoverConfig) -> tuple[Path, dict]:
    """The concepts folder of this config and its identity: the clustering plus the alignment
    settings (θ and the tag sets change every record's alignment, so each choice has a folder of
    its own; folders that differ only there share the merge trees, see `reuse_clustering`)."""
    tag_sets = list(dict.fromkeys(cfg.discovery.tag_sets))
    alignment: dict = {"theta": float(cfg.discovery.theta), "tag_sets": tag_sets}
    resources = resource_identity(tag_sets)  # e.g. WordNet installed or not, and which files
    if resources:
        alignment["resources"] = resources
    ident = {**clustering_identity(store, cfg), "alignment": alignment}
    return store.path.parent / "concepts" / f"{cfg.clustering.method}-{fingerprint(ident)[:8]}", ident


def reuse_clustering(out: Path, layer: int, k: int, clustering_fp: str) -> bool:
    """Link (or copy) a layer's merge tree from a sibling folder with the same clustering (another
    θ or tag-set choice), so a new alignment never re-clusters. True when found."""
    names = ["linkage.npy", "assign.npy", f"labels-K{k}.npy"]
    for sib in sorted(out.parent.iterdir()) if out.parent.exists() else []:
        if sib == out or not (sib / "manifest.json").exists():
            continue
        if (read_manifest(sib) or {}).get("clustering_fingerprint") != clustering_fp:
            continue
        src = sib / f"layer_{layer:02d}"
        if not ((src / "linkage.npy").exists() or (src / f"labels-K{k}.npy").exists()):
            continue
        dst = out / f"layer_{layer:02d}"
        dst.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (src / name).exists() and not (dst / name).exists():
                tmp = unique_tmp(dst / name)
                try:
                    os.link(src / name, tmp)
                except OSError:
                    shutil.copyfile(src / name, tmp)
                tmp.replace(dst / name)
        log.info("layer %d: merge tree reused from %s", layer, sib)
        return True
    return False


def build_concepts(model: str, layer: int, k: int, labels: np.ndarray, members: list[Member]) -> list[Concept]:
    """The K concepts of a layer: concept `c` holds `members[i]` for every `labels[i] == c`, in
    row order (`labels` `[n]`, ints in [0, k)). One stable sort, not a scan of `labels` per concept."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    order = order.tolist()
    return [Concept.build(model, layer, k, cid, [members[i] for i in order[bounds[cid]:bounds[cid + 1]]]) for cid in range(k)]


def _layer_clustering(store, rows, layer: int, ldir: Path, cfg: DiscoverConfig) -> Clustering:
    k = cfg.discovery.k
    link, assign = ldir / "linkage.npy", ldir / "assign.npy"
    if not link.exists() and not (ldir / f"labels-K{k}.npy").exists():
        reuse_clustering(ldir.parent, layer, k, fingerprint(clustering_identity(store, cfg)))
    if link.exists():
        res = Clustering(np.empty(0), np.load(link, allow_pickle=False),
                         np.load(assign, allow_pickle=False) if assign.exists() else None)
        res.labels = res.cut(k)
        return res
    labels_file = ldir / f"labels-K{k}.npy"
    if labels_file.exists():  # k-means keeps labels only
        return Clustering(np.load(labels_file, allow_pickle=False))
    X = (np.asarray(store.layer(layer)) if store.sample_rows is not None else store.layer(layer)[rows]).astype(np.float32)
    if not np.isfinite(X).all():
        raise UserError(f"layer {layer} of {store.path} holds NaN or infinite values; re-extract it (float32)")
    t0 = time.perf_counter()
    res = cluster(X, k, cfg.clustering)
    res.seconds = time.perf_counter() - t0
    log.info("layer %d: %s on %d x %d in %.1f s", layer, cfg.clustering.method, *X.shape, res.seconds)
    if res.assign is not None:
        atomic_save_npy(assign, res.assign)
    if res.linkage is not None:
        atomic_save_npy(link, res.linkage)
    else:
        atomic_save_npy(labels_file, res.labels)
    return res


def _discover_layer(store, rows, layer: int, ldir: Path, cfg: DiscoverConfig, tags: dict, members: list[Member],
                    model_name: str) -> float:
    """Cluster one layer (or reuse its merge tree), cut it at K and write its records and alignment
    (the alignment file last: its presence marks the layer done). Returns the seconds clustering."""
    k = cfg.discovery.k
    res = _layer_clustering(store, rows, layer, ldir, cfg)
    per_set = {name: align(res.labels, t, cfg.discovery.theta, name=name) for name, t in tags.items()}
    concepts = build_concepts(model_name, layer, k, res.labels, members)
    for c in concepts:
        c.alignment = {name: per[c.concept_id] for name, (per, _) in per_set.items()}
    write_concepts(ldir / f"concepts-K{k}.jsonl", concepts)
    atomic_write_json(ldir / f"alignment-K{k}.json",
                      [{**summ.to_row(), "theta": float(cfg.discovery.theta)} for _, summ in per_set.values()])
    return res.seconds


def write_manifest_locked(out: Path, build) -> None:
    """Write the folder's manifest from `build()` under the folder's manifest lock, so that two
    processes never publish it from states read in the other order."""
    with unit_lock(out, "manifest", f"the manifest of {out}"):
        write_manifest(out, build())


def run(cfg: DictConfig | DiscoverConfig) -> DiscoverResult:
    t_start = time.perf_counter()
    cfg = validate(cfg, DiscoverConfig)
    k = cfg.discovery.k
    store = open_store(cfg, for_discovery=True)
    layers = cfg.discovery.layer_list(store.layers)
    out, ident = concepts_path(store, cfg)
    done_before = done_layers(out, k)
    page = out / f"explorer-K{k}.html"
    if (all(layer in done_before for layer in layers) and (out / f"alignment-K{k}.csv").exists()
            and (page.exists() or not cfg.discovery.explorer)):
        log.info("concepts complete, nothing to do: %s (layers %s, K=%d)", out, ",".join(map(str, layers)), k)
        return DiscoverResult(out, store.path, layers, k, collect_alignment(out, k, layers), time.perf_counter() - t_start)
    tokens = store.tokens()
    rows, stats, sample = _sample(cfg, store, tokens, out)
    tags = compute_tag_sets(sample, list(cfg.discovery.tag_sets))
    members = [Member(w, s, p) for w, s, p in zip(sample["word"].astype(str).tolist(), sample["sentence"].astype(int).tolist(),
                                                 sample["position"].astype(int).tolist())]
    model_name = cfg.model.name_or_path
    manifest = {
        "stage": "discover", "fingerprint": fingerprint(ident), "identity": ident,
        "clustering_fingerprint": fingerprint(clustering_identity(store, cfg)),
        "theta": float(cfg.discovery.theta), "tag_sets": list(tags),  # the tag sets computed here
        "inputs": {"store": str(store.path), "store_fingerprint": store.fingerprint,
                   "store_source_fingerprint": store.source_fingerprint},
        "versions": library_versions(), "counts": {"sampled_tokens": len(rows), **stats},
    }

    def every_k_done() -> dict:
        """Every K done so far, from the files (another K's run must not hide this one's layers)."""
        ks = {int(f.stem.split("-K")[1]) for f in out.glob("layer_*/alignment-K*.json")} | {k}
        previous = (read_manifest(out) or {}).get("layers_done", {})
        return {**previous, **{str(kk): sorted(done_layers(out, kk)) for kk in sorted(ks)}}

    # a manifest from the start (complete: false), so a folder in progress or killed says what it holds
    write_manifest_locked(out, lambda: {**manifest, "layers_done": every_k_done(), "complete": False})
    cluster_s = 0.0
    for layer in tqdm(layers, desc="discover", unit="layer", disable=not cfg.extraction.progress):
        ldir = out / f"layer_{layer:02d}"
        if (ldir / f"alignment-K{k}.json").exists():
            continue
        # one process clusters a layer; another that reaches it meanwhile waits, then reuses it
        with unit_lock(ldir, "layer", f"layer {layer} of {out}"):
            if (ldir / f"alignment-K{k}.json").exists():
                log.info("layer %d: clustered at K=%d by another process meanwhile; reused", layer, k)
                continue
            cluster_s += _discover_layer(store, rows, layer, ldir, cfg, tags, members, model_name)
        write_manifest_locked(out, lambda: {**manifest, "layers_done": every_k_done(), "complete": False})  # per layer
    with unit_lock(out, f"views-K{k}", f"the folder views of {out}"):
        # a run's result holds its own layers only
        every, done = _write_views(cfg, store, out, model_name)
        write_manifest_locked(out, lambda: {**manifest, "layers_done": every_k_done(),
                                            "complete": len(done) == len(store.layers)})
    table = every[every["layer"].isin(layers)].reset_index(drop=True)
    log.info("concepts: %s (layers %s, K=%d)", out, ",".join(map(str, layers)), k)
    if cfg.discovery.explorer:
        log.info("open the concept explorer: %s", (out / f"explorer-K{k}.html").resolve().as_uri())
    took = time.perf_counter() - t_start
    log.info("discovery took %.1f s, %.1f s of it (%.0f%%) in %s", took, cluster_s, 100 * cluster_s / max(took, 1e-9),
             cfg.clustering.method)
    return DiscoverResult(out, store.path, layers, k, table, took, cluster_s)


def _sample(cfg: DiscoverConfig, store, tokens, out: Path):
    """The tokens to cluster: (rows of the full store [n], sampling stats, their token table).
    The folder's own sample wins, then a sampled store's, else a new draw (saved once every
    check has passed: a failed check leaves no folder)."""
    k = cfg.discovery.k
    sample_file = out / "sample.npy"  # rows of the full store, whichever store clusters them
    if store.sample_rows is not None and store.manifest["sample"] != asdict(cfg.sampling):
        raise UserError(f"the sampled store {store.path} was drawn with sampling={store.manifest['sample']}, not "
                        f"{asdict(cfg.sampling)}; pass matching sampling options or discovery.store=null")
    if sample_file.exists():
        rows = np.load(sample_file, allow_pickle=False)
        stats = json.loads((out / "sample.json").read_text())
    elif store.sample_rows is not None:  # the store holds just the sample
        rows, stats = store.sample_rows, dict(store.manifest["sample_stats"])
    else:
        s = cfg.sampling
        rows, st = sample_tokens(tokens["word"].tolist(), s.min_count, s.max_per_type, s.seed, s.lowercase)
        stats = asdict(st)
    log.info("sampling kept %d of %d tokens (%d word types)", len(rows), len(tokens), stats["types_kept"])
    if len(rows) == 0:
        raise UserError(f"sampling kept no token of {store.path}; lower sampling.min_count (now {cfg.sampling.min_count})")
    if len(rows) < k:
        raise UserError(
            f"discovery.k={k} is larger than the {len(rows)} sampled tokens; lower discovery.k or "
            f"sampling.min_count, or use a larger corpus"
        )
    if not sample_file.exists():
        atomic_write_json(out / "sample.json", stats)
        atomic_save_npy(sample_file, rows)
    if store.sample_rows is not None:
        if not np.array_equal(rows, store.sample_rows):
            raise UserError(f"{sample_file} and the sampled store {store.path} hold other samples; delete {out} and re-run")
        return rows, stats, tokens.reset_index(drop=True)
    return rows, stats, tokens.iloc[rows].reset_index(drop=True)


def _write_views(cfg: DiscoverConfig, store, out: Path, model_name: str):
    """The folder's own views at K (alignment table and plot, explorer), covering every layer it
    holds (the caller holds the views lock: the last writer sees every finished layer). Returns
    the alignment table and the layers done."""
    k = cfg.discovery.k
    every = collect_alignment(out, k)
    atomic_write_text(out / f"alignment-K{k}.csv", every.to_csv(index=False))
    if cfg.discovery.plot and len(every):
        from concepts.discovery.plots import plot_alignment

        plot_alignment(every, out / f"alignment-K{k}.png",
                       f"{cfg.model.name or model_name}: alignment at θ={cfg.discovery.theta}, K={k}")
    done = sorted(done_layers(out, k))
    if cfg.discovery.explorer:
        by_layer = {layer: read_concepts(out / f"layer_{layer:02d}" / f"concepts-K{k}.jsonl") for layer in done}
        write_explorer(out / f"explorer-K{k}.html", by_layer, store.sentence_words(),
                       f"{cfg.model.name or model_name} · {cfg.corpus.name} · K={k}",
                       label_source=views_source(out, k))  # the label of record the last annotation chose
    return every, done


def read_concepts_folder(path: str | Path, option: str) -> dict:
    """The manifest of a concepts folder made by this stage; `option` names the setting that
    pointed at it, for the error message."""
    manifest = read_manifest(Path(path))
    if manifest is None or manifest.get("stage") != "discover":
        raise UserError(f"{option}={path}: not a concepts folder of concepts.discover (no manifest.json)")
    return manifest


def done_layers(out: Path, k: int) -> dict[int, Path]:
    """Layers finished at this K (their alignment file, written last, exists)."""
    return {int(f.parent.name.split("_")[1]): f for f in out.glob(f"layer_*/alignment-K{k}.json")}


def collect_alignment(out: Path, k: int, layers: list[int] | None = None) -> pd.DataFrame:
    """The alignment rows of the layers done at K (of `layers` only, when given)."""
    rows = []
    for layer, f in sorted(done_layers(out, k).items()):
        if layers is not None and layer not in layers:
            continue
        rows += [{"layer": layer, **r} for r in json.loads(f.read_text())]
    cols = ["layer", *AlignmentSummary("", 0, 0, 0, 0).to_row().keys(), "theta"]
    return pd.DataFrame(rows, columns=cols)
