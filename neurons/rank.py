"""`python -m neurons.rank`: rank neurons by salience for a label source and evaluate the ranking.

    python -m neurons.rank                                      # Probeless on UPOS, each layer
    python -m neurons.rank ranking=iou layer=6
    python -m neurons.rank ranking=probe_weights neurons.concat=true   # all layers together
    python -m neurons.rank labels=concepts                      # the largest labelled concepts
    python -m neurons.rank -m ranking=probeless,iou,random hydra/launcher=joblib

Per unit (a layer, or the concatenated layers) it writes, under
`<workspace>/<model>/<corpus>-<fp>/neurons/<task>-<method>-<fp>/<unit>/`: the ranking
(ranking.json, scores.npy, overall.npy), eval.json (probes retrained on top/random/bottom-k
neurons, ablation of the top/random-k neurons in a trained probe), super_sub.csv (the paper's
Table 11: overlap of the top neurons of a super concept and its sub concepts), top_words.json
(top activating words of the top neurons) and PNG plots.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from concepts.artifacts import atomic_write_json, atomic_write_text, fingerprint
from concepts.cli import hydra_entry, model_slug
from concepts.config import register_configs, validate
from concepts.errors import UserError
from concepts.store import row_index
from neurons import plots
from neurons.config import RankConfig, register_neuron_configs
from neurons.evaluate import Data, ablation, resolve_ks, retrain_curve, super_sub_overlap
from neurons.rankers import make_ranker
from neurons.ranking import Ranking, neuron_names
from neurons.scale import describe, scale_report
from probing.config import register_probing_configs
from probing.data import ArrayDataModule, check_finite, split_examples
from probing.fit import FitOptions, fit_probe
from probing.train import ConceptSource, labels_identity, tasks_for

log = logging.getLogger(__name__)
register_configs()
register_probing_configs()
register_neuron_configs()


@dataclass
class RankResult:
    path: Path
    rankings: dict[str, Ranking]  # unit -> ranking
    curves: pd.DataFrame  # method, unit, kind (retrain | ablation), k, neurons/ablated, accuracy, drop
    super_sub: pd.DataFrame
    seconds: float
    scale: dict = field(default_factory=dict)  # unit -> neurons.scale.scale_report
    super_sub_missing: list = field(default_factory=list)  # layers without concepts at this K


CURVE_COLUMNS = ["model", "unit", "task", "method", "k", "neurons", "accuracy", "kind", "ablated", "value", "full", "drop"]


def _concepts_if_any(cfg: RankConfig, store) -> ConceptSource | None:
    """The concept records for this config when they exist (never clusters just for this)."""
    if cfg.labels.source != "tag" or cfg.labels.concepts:
        return ConceptSource(cfg, store)
    from concepts.discover import concepts_path

    path, _ = concepts_path(store, cfg)
    if not any(path.glob(f"layer_*/concepts-K{cfg.discovery.k}.jsonl")):
        return None
    return ConceptSource(cfg, store, path)


def _groups(concepts, rows_of: dict, tag_set: str, max_super: int = 6, max_sub: int = 8):
    """Super concepts from aligned tags: tag -> {sub concept name: its rows}."""
    by_tag: dict[str, list] = {}
    for c in concepts:
        tag = (c.alignment.get(tag_set) or {}).get("aligned")
        if tag:
            by_tag.setdefault(tag, []).append(c)
    groups = {}
    for tag, cs in sorted(by_tag.items(), key=lambda kv: -sum(c.size for c in kv[1])):
        if len(cs) < 2:
            continue
        cs = sorted(cs, key=lambda c: -c.size)[:max_sub]
        groups[f"{tag_set.upper()}={tag}"] = {f"C{c.concept_id}": [rows_of[(m.sentence, m.position)] for m in c.members]
                                              for c in cs}
        if len(groups) >= max_super:
            break
    return groups


def super_sub_table(cfg: RankConfig, store, layer: int, concepts: ConceptSource, rows_of: dict) -> pd.DataFrame:
    """`rows_of`: (sentence, position) -> store row (`concepts.store.row_index`)."""
    cs = concepts.layer(layer)
    groups = _groups(cs, rows_of, cfg.neurons.super_tag_set)
    if not groups:
        return pd.DataFrame()
    # the layer's sampled tokens (every concept's members): sub concepts vs the rest of them
    pool = np.unique([rows_of[(m.sentence, m.position)] for c in cs for m in c.members])
    X = np.asarray(store.layer(layer)[pool], dtype=np.float32)
    index = {r: i for i, r in enumerate(pool.tolist())}
    masks = {}
    for sup, subs in groups.items():
        masks[sup] = {}
        for sub, rs in subs.items():
            m = np.zeros(len(X), dtype=bool)
            m[[index[r] for r in rs]] = True
            masks[sup][sub] = m
    ranker = make_ranker(cfg.ranking.method, **cfg.ranking.params())
    rows = super_sub_overlap(ranker, X, masks, cfg.neurons.top)
    return pd.DataFrame(rows).assign(layer=layer, method=cfg.ranking.method)


def top_words(X: np.ndarray, words: np.ndarray, ranking: Ranking, n_neurons: int = 20, n_words: int = 15) -> dict:
    out = {}
    for j in ranking.order()[:n_neurons]:
        seen, listed = set(), []
        for i in np.argsort(-X[:, j], kind="stable"):
            w = str(words[i])
            if w not in seen:
                seen.add(w)
                listed.append([w, float(X[i, j])])
            if len(listed) >= n_words:
                break
        out[ranking.neurons[j]] = listed
    return out


def _unit_name(layers: list[int], concat: bool) -> str:
    return "layers_" + "-".join(map(str, layers)) if concat else f"layer_{layers[0]:02d}"


def run(cfg: DictConfig | RankConfig) -> RankResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, RankConfig)
    from concepts.discover import open_store

    store = open_store(cfg)
    layers = cfg.layer_list(store.n_layers)
    if cfg.labels.source == "concept_binary":
        raise UserError("neurons.rank ranks for one multi-class task: use labels=upos, xpos or concepts")
    concepts = _concepts_if_any(cfg, store) if (cfg.labels.source != "tag" or cfg.neurons.super_sub) else None
    tokens = store.tokens()
    model = cfg.model.name or model_slug(cfg.model.name_or_path)
    nrn = {k: v for k, v in asdict(cfg.neurons).items() if k != "plot"}
    if not cfg.neurons.super_sub:
        for key in ("super_tag_set", "top"):
            nrn.pop(key)
    if not cfg.neurons.ablation:
        nrn.pop("ablate")
    ident = {"store": store.fingerprint, "labels": labels_identity(cfg.labels),
             "ranking": {"method": cfg.ranking.method, **cfg.ranking.params()},
             "neurons": nrn, "split": asdict(cfg.split), "concepts": concepts.fingerprint if concepts else None}
    fp = fingerprint(ident)
    family = cfg.labels.tag if cfg.labels.source == "tag" else f"concepts-top{cfg.labels.top}"
    out = store.path.parent / "neurons" / f"{family}-{cfg.ranking.method}-{fp[:8]}"
    units = [layers] if cfg.neurons.concat else [[layer] for layer in layers]
    rankings, curves, tables, scales, missing = {}, [], [], {}, []
    # the evaluation probes are the default converged linear probe, whatever `probe=` says, so
    # that a change of the probing setup re-runs probing only
    opt = FitOptions(seed=cfg.neurons.seed, device=cfg.probe.device)
    bar = tqdm(units, desc=f"rank neurons ({cfg.ranking.method})", unit="layer" if not cfg.neurons.concat else "set",
               disable=not cfg.extraction.progress)
    tag_task = tasks_for(cfg, tokens, layers[0], None)[0] if cfg.labels.source == "tag" else None  # same every layer
    rows_of = None  # built on first use
    for unit_layers in bar:
        unit = _unit_name(unit_layers, cfg.neurons.concat)
        udir = out / unit
        task_layer = unit_layers[-1]
        (ls,) = [tag_task] if tag_task is not None else tasks_for(cfg, tokens, task_layer, concepts)
        if cfg.neurons.max_tokens and len(ls) > cfg.neurons.max_tokens:
            keep = np.sort(np.random.default_rng(cfg.neurons.seed).choice(len(ls), cfg.neurons.max_tokens, replace=False))
            ls = type(ls)(ls.name, ls.rows[keep], ls.y[keep], ls.classes, ls.words[keep], ls.sentences[keep])
        split = split_examples(ls, cfg.split.by, cfg.split.train, cfg.split.dev, cfg.split.seed)
        names = neuron_names(unit_layers, store.hidden_size)
        meta = {"model": model, "model_path": cfg.model.name_or_path, "store": store.fingerprint, "unit": unit,
                "layers": unit_layers, "task": ls.name, "fingerprint": fp,
                "class_counts": np.bincount(ls.y[split.train], minlength=len(ls.classes)).tolist()}
        done = udir / "eval.json"
        if done.exists() and json.loads(done.read_text()).get("fingerprint") == fp:
            ranking = Ranking.load(udir, expect={"store": store.fingerprint, "layers": unit_layers})
            ev = json.loads(done.read_text())
            rankings[unit] = ranking
            scales[unit] = json.loads((udir / "scale.json").read_text()) if (udir / "scale.json").exists() else {}
            missing += ev.get("super_sub_missing", [])
            curves += ev["rows"]
            if (udir / "super_sub.csv").exists() and (udir / "super_sub.csv").stat().st_size > 1:
                tables.append(pd.read_csv(udir / "super_sub.csv"))
            continue
        X = np.hstack([np.asarray(store.layer(layer)[ls.rows], dtype=np.float32) for layer in unit_layers])
        check_finite(X, f"layer {', '.join(map(str, unit_layers))} of the store {store.path} ({ls.name} rows)")
        ranker = make_ranker(cfg.ranking.method, **cfg.ranking.params())
        tr = time.perf_counter()
        ranking = ranker.rank(X[split.train], ls.y[split.train], ls.classes, names, meta)
        rank_seconds = time.perf_counter() - tr
        ranking.save(udir)
        scales[unit] = scale_report(ranker, ranking, X[split.train], ls.y[split.train], cfg.ranking.method,
                                    cfg.ranking.params(), unit_layers, 10, cfg.neurons.outlier_spread,
                                    cfg.neurons.outlier_offset)
        atomic_write_json(udir / "scale.json", scales[unit])
        log.info("%s", describe(unit, scales[unit]))
        ks = resolve_ks(list(cfg.neurons.ks), ranking.dim)
        data = Data(X[split.train], ls.y[split.train], X[split.test], ls.y[split.test], len(ls.classes))
        rows = []
        # the probe on all neurons chooses the penalty (on the dev rows); the top/random/bottom-k
        # probes reuse it, so the curves compare neuron sets, not penalties
        full = fit_probe(ArrayDataModule(data.X_train, data.y_train, X[split.dev], ls.y[split.dev]), data.classes, opt)
        if cfg.neurons.retrain:
            opt_k = replace(opt, select=False, l2=full.l2)
            rows += [{**r, "kind": "retrain"} for r in retrain_curve(ranking, data, ks, opt_k, cfg.neurons.seed)]
        if cfg.neurons.ablation:
            rows += [{**r, "kind": "ablation"} for r in ablation(ranking, full, data, ks, cfg.neurons.seed, cfg.neurons.ablate)]
        rows = [{"model": model, "unit": unit, "task": ls.name, **r} for r in rows]
        curves += rows
        if cfg.neurons.top_words:
            atomic_write_json(udir / "top_words.json", top_words(X, ls.words, ranking, 20, cfg.neurons.top_words))
        table = pd.DataFrame()
        unit_missing = []
        if cfg.neurons.super_sub and concepts is not None and not cfg.neurons.concat:
            if concepts.has_layer(task_layer):
                rows_of = rows_of if rows_of is not None else row_index(tokens)
                table = super_sub_table(cfg, store, task_layer, concepts, rows_of)
                if len(table):
                    tables.append(table)
            else:
                unit_missing = [task_layer]
                log.warning("super/sub analysis skipped for layer %d: no concepts at K=%d in %s (run concepts.discover "
                            "for that layer)", task_layer, cfg.discovery.k, concepts.path)
        missing += unit_missing
        atomic_write_text(udir / "super_sub.csv", table.to_csv(index=False) if len(table) else "\n")
        if cfg.neurons.plot:
            plots.salience_heatmap(ranking, udir / "salience.png")
            if len(unit_layers) > 1:
                plots.layer_distribution(ranking, udir / "layers.png")
            if rows:
                plots.accuracy_vs_k(pd.DataFrame(rows), udir / "accuracy_vs_k.png", f"{model} {unit}: {ls.name}, {ranking.method}")
        atomic_write_json(done, {"fingerprint": fp, "rank_seconds": rank_seconds, "rows": rows,
                                 "super_sub_missing": unit_missing})
        rankings[unit] = ranking
        top = [ranking.neurons[i] for i in ranking.order()[:5]]
        log.info("%s %s: ranked %d neurons in %.1f s; top %s", unit, ranking.method, ranking.dim, rank_seconds, ", ".join(top))
    curves_df = pd.DataFrame(curves)
    # one column order whether rows were computed now or read back from eval.json (sorted keys)
    curves_df = curves_df[[c for c in CURVE_COLUMNS if c in curves_df] + [c for c in curves_df if c not in CURVE_COLUMNS]]
    sub_df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(curves_df):
        atomic_write_text(out / "curves.csv", curves_df.to_csv(index=False))
    if len(sub_df):
        atomic_write_text(out / "super_sub.csv", sub_df.to_csv(index=False))
    _log_wandb(cfg, out, rankings, curves_df, sub_df, model,
               {"store": store.fingerprint, "concepts": concepts.fingerprint if concepts else None})
    log.info("neuron rankings: %s", out)
    return RankResult(out, rankings, curves_df, sub_df, time.perf_counter() - t0, scales, sorted(set(missing)))


def rankings_table(rankings: dict, top: int = 50) -> pd.DataFrame:
    """unit, rank, neuron, overall salience: the first `top` neurons of each unit."""
    rows = []
    for unit, r in sorted(rankings.items()):
        for rank, i in enumerate(r.order()[:top], start=1):
            rows.append({"unit": unit, "rank": rank, "neuron": r.neurons[i], "salience": float(r.overall[i])})
    return pd.DataFrame(rows, columns=["unit", "rank", "neuron", "salience"])


def _log_wandb(cfg: RankConfig, out: Path, rankings, curves: pd.DataFrame, sub: pd.DataFrame, model: str,
               fps: dict | None = None) -> None:
    if cfg.logger.kind != "wandb":
        return
    fps = fps or {}
    import wandb

    from neurons.wandb_summary import accuracy_vs_k_plots
    from probing.loggers import run_config, start_run, wandb_root

    run = start_run(cfg.logger, wandb_root(cfg), f"{model}-{out.name}", cfg.logger.group or "neurons", "rank",
                    [model, cfg.ranking.method, cfg.labels.tag if cfg.labels.source == "tag" else cfg.labels.source],
                    run_config(cfg, store=fps.get("store"), ranking=out.name.rsplit("-", 1)[-1], concepts=fps.get("concepts")))
    payload = {"rankings": wandb.Table(dataframe=rankings_table(rankings))}
    if len(curves):
        payload["curves"] = wandb.Table(dataframe=curves)
        payload.update(accuracy_vs_k_plots(wandb, curves))
    if len(sub):
        payload["super_sub"] = wandb.Table(dataframe=sub)
    for unit in rankings:
        for png in sorted((out / unit).glob("*.png")):
            payload[f"{unit}/{png.stem}"] = wandb.Image(str(png))
    run.log(payload)
    top = curves[(curves.get("kind") == "retrain") & (curves.get("neurons") == "top")] if len(curves) else curves
    if len(top):
        run.summary.update({f"top{int(k)}_accuracy": float(v) for k, v in top.groupby("k")["accuracy"].mean().items()})
    run.finish()


def save_results(job_dir: Path, result: RankResult) -> None:
    """Leave the evaluation rows and ranking folders in a Hydra job folder for the sweep summary."""
    atomic_write_json(Path(job_dir) / "rank-results.json", {
        "rows": json.loads(result.curves.to_json(orient="records")) if len(result.curves) else [],
        "rankings": [str(result.path / unit) for unit in result.rankings]})


main = hydra_entry("rank", run, on_result=save_results)

if __name__ == "__main__":
    main()
