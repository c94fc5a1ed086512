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

One probe, probing's: the evaluation probes (retrained and ablated) and `ranking=probe_weights`
train the run's `probe` config as `probing.train` does (`probe_options`: its C selection, its
standardisation), and probe_weights ranks the very probe that the ablation ablates. The folder's
identity holds the probe options wherever a probe is trained; a ranking that needs none (all
but probe_weights) is reused from the folder of another probe config instead of ranked again,
so changing only the probe re-runs the evaluation, not the ranking.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
from concepts.core.artifacts import atomic_write_json, atomic_write_text, fingerprint, unique_tmp
from concepts.core.cli import hydra_entry, model_slug
from concepts.core.config import validate
from concepts.core.errors import UserError
from concepts.core.locks import unit_lock
from concepts.extraction.store import row_index
from neurons import plots
from neurons.config import RankConfig, register_neuron_configs
from neurons.evaluate import Data, ablation, resolve_ks, retrain_curve, super_sub_overlap
from neurons.rankers import Ranker, make_ranker, probe_meta
from neurons.ranking import Ranking, neuron_names, rankings_table
from neurons.scale import describe, scale_report
from probing.config import register_probing_configs
from probing.data import ArrayDataModule, check_finite, split_examples
from probing.fit import FitOptions, fit_probe
from probing.loggers import already_logged, mark_logged, wandb_root
from probing.train import ConceptSource, fit_options, labels_identity, probe_identity, tasks_for

log = logging.getLogger(__name__)
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
    from concepts.discovery.stage import concepts_path

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
    rows = super_sub_overlap(ranker_for(cfg), X, masks, cfg.neurons.top)
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


def probe_options(cfg: RankConfig) -> FitOptions:
    """The probe of a ranking run: probing's (`probing.train.fit_options`, from the run's `probe`
    config: the same C selection and standardisation), seeded by `neurons.seed` (the ranking
    run's seed, part of its identity)."""
    opt = fit_options(cfg)
    return replace(opt, c_grid=tuple(float(c) for c in opt.c_grid), seed=cfg.neurons.seed)


def ranker_for(cfg: RankConfig) -> Ranker:
    """The ranker of a run's config: `ranking.*`, and for probe_weights the run's probe."""
    params = cfg.ranking.params()
    if cfg.ranking.method == "probe_weights":
        params["fit"] = probe_options(cfg)
    return make_ranker(cfg.ranking.method, **params)


EVAL_KEYS = ("ks", "retrain", "ablation", "ablate")  # neurons.* options of the evaluation only


def ranking_identity(cfg: RankConfig, store_fp: str, concepts) -> dict:
    """What a unit's ranking and its ranking-side files (scale.json, top_words.json,
    super_sub.csv) depend on: for probe_weights the probe's options too."""
    nrn = {k: v for k, v in asdict(cfg.neurons).items() if k != "plot" and k not in EVAL_KEYS}
    if not cfg.neurons.super_sub:
        for key in ("super_tag_set", "top"):
            nrn.pop(key)
    ranking = {"method": cfg.ranking.method, **cfg.ranking.params()}
    if cfg.ranking.method == "probe_weights":
        ranking["probe"] = probe_identity(cfg.probe)
    return {"store": store_fp, "labels": labels_identity(cfg.labels), "ranking": ranking, "neurons": nrn,
            "split": asdict(cfg.split), "task": task_identity(cfg), "concepts": concepts.fingerprint if concepts else None}


def evaluation_identity(cfg: RankConfig) -> dict:
    """What the evaluation adds (eval.json's curves): its options and, when it trains probes, the probe's."""
    n = cfg.neurons
    out = {"ks": list(n.ks), "retrain": n.retrain, "ablation": n.ablation}
    if n.ablation:
        out["ablate"] = n.ablate
    if n.retrain or n.ablation:
        out["probe"] = probe_identity(cfg.probe)
    return out


def _unit_name(layers: list[int], concat: bool) -> str:
    return "layers_" + "-".join(map(str, layers)) if concat else f"layer_{layers[0]:02d}"


def run(cfg: DictConfig | RankConfig) -> RankResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, RankConfig)
    from concepts.discovery.stage import open_store

    store = open_store(cfg)
    layers = cfg.layer_list(store.layers)
    _check_options(cfg)
    concepts = _concepts_if_any(cfg, store) if (cfg.labels.source != "tag" or cfg.neurons.super_sub) else None
    tokens = store.tokens()
    model = cfg.model.name or model_slug(cfg.model.name_or_path)
    rank_ident = ranking_identity(cfg, store.fingerprint, concepts)
    rank_fp = fingerprint(rank_ident)
    fp = fingerprint({**rank_ident, "evaluation": evaluation_identity(cfg)})
    family = cfg.labels.tag if cfg.labels.source == "tag" else f"concepts-top{cfg.labels.top}"
    out = store.path.parent / "neurons" / f"{family}-{cfg.ranking.method}-{fp[:8]}"
    units = [layers] if cfg.neurons.concat else [[layer] for layer in layers]
    rankings, curves, tables, scales, missing = {}, [], [], {}, []
    # one probe, probing's: the evaluation's (retrained, ablated) and probe_weights' own
    opt = probe_options(cfg)
    bar = tqdm(units, desc=f"rank neurons ({cfg.ranking.method})", unit="layer" if not cfg.neurons.concat else "set",
               disable=not cfg.extraction.progress)
    tag_task = tasks_for(cfg, tokens, layers[0], None)[0] if cfg.labels.source == "tag" else None  # same every layer
    row_cache: dict = {}  # rows_of, built on first use
    fresh, unit_fps = 0, {}
    for unit_layers in bar:
        unit = _unit_name(unit_layers, cfg.neurons.concat)
        udir = out / unit
        task_layer = unit_layers[-1]
        ls, split = _unit_task(cfg, tokens, tag_task, task_layer, concepts)
        names = neuron_names(unit_layers, store.hidden_size)
        ufp = unit_fingerprint(cfg, fp, concepts, task_layer)
        meta = {"model": model, "model_path": cfg.model.name_or_path, "store": store.fingerprint, "unit": unit,
                "layers": unit_layers, "task": ls.name, "fingerprint": ufp,
                "ranking_fingerprint": unit_fingerprint(cfg, rank_fp, concepts, task_layer),
                "class_counts": np.bincount(ls.y[split.train], minlength=len(ls.classes)).tolist()}
        unit_fps[unit] = ufp
        cached = _load_unit(udir, ufp, store.fingerprint, unit_layers)
        if cached is None:  # not done here: rank it, unless another process is at it (then reuse theirs)
            with unit_lock(udir, "ranking", f"ranking {unit} ({cfg.ranking.method})") as waited:
                cached = _load_unit(udir, ufp, store.fingerprint, unit_layers) if waited else None
                if cached is not None:
                    log.info("%s %s: ranked by another process meanwhile; reused", unit, cfg.ranking.method)
                else:
                    fresh += 1
                    rows, table, unit_missing, ranking = _rank_unit(
                        cfg, store, ls, split, unit_layers, udir, names, meta, opt, concepts, tokens, model, unit,
                        scales, ufp, row_cache, out)
        if cached is not None:
            rankings[unit], scales[unit], ev, table = cached
            missing += ev.get("super_sub_missing", [])
            curves += ev["rows"]
            if table is not None:
                tables.append(table)
            continue
        curves += rows
        if len(table):
            tables.append(table)
        missing += unit_missing
        rankings[unit] = ranking
        top = [ranking.neurons[i] for i in ranking.order()[:5]]
        log.info("%s %s: ranked %d neurons in %.1f s; top %s", unit, ranking.method, ranking.dim,
                 json.loads((udir / "eval.json").read_text())["rank_seconds"], ", ".join(top))
    curves_df = _curves_frame(curves)
    sub_df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if fresh or not (out / "curves.csv").exists():
        # the folder's tables cover every current unit in it (any run's layers); the result, this run's
        with unit_lock(out, "summary", f"the tables of {out}"):
            _write_folder_tables(cfg, out, fp, concepts)
    if cfg.logger.kind == "wandb":  # once per set of current units: a re-run with nothing new logs nothing
        _log_wandb_once(cfg, out, {"ranking": fp, "units": unit_fps}, rankings, curves_df, sub_df, model,
                        {"store": store.fingerprint, "concepts": concepts.fingerprint if concepts else None})
    log.info("neuron rankings: %s", out)
    return RankResult(out, rankings, curves_df, sub_df, time.perf_counter() - t0, scales, sorted(set(missing)))


def _check_options(cfg: RankConfig) -> None:
    if cfg.labels.source == "concept_binary":
        raise UserError("neurons.rank ranks for one multi-class task: use labels=upos, xpos or concepts")
    if cfg.ranking.method == "probe_weights" and cfg.probe.kind != "linear":
        raise UserError(f"ranking=probe_weights ranks a linear probe's weights, and probe.kind={cfg.probe.kind!r} has "
                        "no weight per neuron: use probe=linear (or another ranking)")


def _unit_task(cfg: RankConfig, tokens, tag_task, task_layer: int, concepts):
    """The task a unit is ranked for (at most neurons.max_tokens rows, drawn with neurons.seed) and
    its train/dev/test split."""
    (ls,) = [tag_task] if tag_task is not None else tasks_for(cfg, tokens, task_layer, concepts)
    if cfg.neurons.max_tokens and len(ls) > cfg.neurons.max_tokens:
        keep = np.sort(np.random.default_rng(cfg.neurons.seed).choice(len(ls), cfg.neurons.max_tokens, replace=False))
        ls = type(ls)(ls.name, ls.rows[keep], ls.y[keep], ls.classes, ls.words[keep], ls.sentences[keep])
    return ls, split_examples(ls, cfg.split.by, cfg.split.train, cfg.split.dev, cfg.split.seed)


def _log_wandb_once(cfg: RankConfig, out: Path, key: dict, rankings, curves_df, sub_df, model: str, fps: dict) -> None:
    if not already_logged(cfg.logger, wandb_root(cfg), key):
        _log_wandb(cfg, out, rankings, curves_df, sub_df, model, fps)
        mark_logged(cfg.logger, wandb_root(cfg), key)


def task_identity(cfg: RankConfig) -> dict:
    """The probe-data options that decide which rows and classes a ranking sees."""
    out = {"min_examples": cfg.probing.min_examples}
    if cfg.labels.source == "tag" and cfg.labels.max_tokens:
        out["seed"] = cfg.probing.seed  # draws the max_tokens rows
    return out


def unit_fingerprint(cfg: RankConfig, fp: str, concepts, task_layer: int) -> str:
    """A unit's identity: the folder's, and the records of the concept layers it reads (its labels
    from concepts, its super/sub table), so clustering another layer never makes it stale."""
    if concepts is None:
        return fp
    layers = {task_layer} | ({cfg.labels.concept_layer} if cfg.labels.concept_layer is not None else set())
    return fingerprint({"ranking": fp, "records": {str(la): concepts.layer_fingerprint(la) for la in sorted(layers)}})


def _load_unit(udir: Path, ufp: str, store_fp: str, unit_layers: list[int]):
    """(ranking, scale, eval, super/sub table or None) of a finished unit with this fingerprint, else None."""
    done = udir / "eval.json"
    if not done.exists():
        return None
    ev = json.loads(done.read_text())
    if ev.get("fingerprint") != ufp:
        return None
    ranking = Ranking.load(udir, expect={"store": store_fp, "layers": unit_layers})
    scale = json.loads((udir / "scale.json").read_text()) if (udir / "scale.json").exists() else {}
    table = None
    if (udir / "super_sub.csv").exists() and (udir / "super_sub.csv").stat().st_size > 1:
        table = pd.read_csv(udir / "super_sub.csv")
    return ranking, scale, ev, table


def _curves_frame(curves: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(curves)
    # one column order whether rows were computed now or read back from eval.json (sorted keys)
    return df[[c for c in CURVE_COLUMNS if c in df] + [c for c in df if c not in CURVE_COLUMNS]]


def _write_folder_tables(cfg: RankConfig, out: Path, fp: str, concepts) -> None:
    """curves.csv and super_sub.csv of a ranking folder: every unit whose eval.json is current."""
    curves, tables = [], []
    for done in sorted(out.glob("*/eval.json")):
        ev = json.loads(done.read_text())
        unit_layers = [int(x) for x in done.parent.name.split("_", 1)[1].split("-")]
        if ev.get("fingerprint") != unit_fingerprint(cfg, fp, concepts, unit_layers[-1]):
            continue
        curves += ev["rows"]
        sub = done.parent / "super_sub.csv"
        if sub.exists() and sub.stat().st_size > 1:
            tables.append(pd.read_csv(sub))
    if curves:
        atomic_write_text(out / "curves.csv", _curves_frame(curves).to_csv(index=False))
    if tables:
        atomic_write_text(out / "super_sub.csv", pd.concat(tables, ignore_index=True).to_csv(index=False))


def _copy(src: Path, dst: Path) -> None:
    tmp = unique_tmp(dst)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _reuse_ranking(out: Path, unit: str, udir: Path, meta: dict) -> tuple[Ranking, float] | None:
    """The unit's ranking, made with the same ranking identity (`meta["ranking_fingerprint"]`) in
    the folder of other evaluation options (another probe, other ks), copied into `udir` with its
    ranking-side files: (ranking, the seconds it took), or None when there is none."""
    prefix = out.name.rsplit("-", 1)[0]  # <family>-<method>
    for other in sorted(out.parent.glob(f"{prefix}-*")):
        src = other / unit
        if other == out or not all((src / f).exists() for f in ("eval.json", "ranking.json", "scale.json")):
            continue  # eval.json is written last: a unit without it is not complete
        try:
            found = Ranking.load(src)
            ev = json.loads((src / "eval.json").read_text())
        except (OSError, ValueError, KeyError, UserError):
            continue
        if found.meta.get("ranking_fingerprint") != meta["ranking_fingerprint"]:
            continue
        found.meta = {**found.meta, **meta}
        found.save(udir)
        for name in ("scale.json", "top_words.json", "super_sub.csv"):
            if (src / name).exists():
                _copy(src / name, udir / name)
        log.info("%s %s: ranking reused from %s (the same ranking; other evaluation options)", unit, found.method,
                 other.name)
        return found, float(ev.get("rank_seconds") or 0.0)
    return None


def _rank_unit(cfg, store, ls, split, unit_layers, udir, names, meta, opt, concepts, tokens, model, unit, scales, ufp,
               row_cache, out):
    """Rank one unit (or reuse its ranking from another folder: `_reuse_ranking`) and evaluate
    it; writes its folder (eval.json last). Returns (curve rows, super/sub table, layers missing
    concepts, ranking)."""
    task_layer = unit_layers[-1]
    X = np.hstack([np.asarray(store.layer(layer)[ls.rows], dtype=np.float32) for layer in unit_layers])
    check_finite(X, f"layer {', '.join(map(str, unit_layers))} of the store {store.path} ({ls.name} rows)")
    k = len(ls.classes)
    data = Data(X[split.train], ls.y[split.train], X[split.test], ls.y[split.test], k)
    super_sub = cfg.neurons.super_sub and concepts is not None and not cfg.neurons.concat
    unit_missing = [task_layer] if super_sub and not concepts.has_layer(task_layer) else []
    full = None  # the probe on all neurons, trained once: probe_weights' ranking and the evaluation's
    reused = _reuse_ranking(out, unit, udir, meta)
    if reused is not None:
        ranking, rank_seconds = reused
        scales[unit] = json.loads((udir / "scale.json").read_text())
        sub = udir / "super_sub.csv"
        table = pd.read_csv(sub) if sub.exists() and sub.stat().st_size > 1 else pd.DataFrame()
        if not sub.exists():
            atomic_write_text(sub, "\n")
    else:
        ranker = ranker_for(cfg)
        tr = time.perf_counter()
        if cfg.ranking.method == "probe_weights":
            # the probe on all neurons, C chosen on the dev rows as probing does; ranked and then ablated
            full = ranker.train(data.X_train, data.y_train, k, X[split.dev], ls.y[split.dev])
            ranking = ranker.rank_probe(full, ls.classes, names, meta, np.bincount(data.y_train, minlength=k) > 0)
        else:
            ranking = ranker.rank(data.X_train, data.y_train, ls.classes, names, meta)
        rank_seconds = time.perf_counter() - tr
        ranking.save(udir)
        scales[unit] = scale_report(ranker, ranking, data.X_train, data.y_train, cfg.ranking.method,
                                    cfg.ranking.params(), unit_layers, 10, cfg.neurons.outlier_spread,
                                    cfg.neurons.outlier_offset)
        atomic_write_json(udir / "scale.json", scales[unit])
        if cfg.neurons.top_words:
            atomic_write_json(udir / "top_words.json", top_words(X, ls.words, ranking, 20, cfg.neurons.top_words))
        table = pd.DataFrame()
        if super_sub and not unit_missing:
            if "rows_of" not in row_cache:
                row_cache["rows_of"] = row_index(tokens)
            table = super_sub_table(cfg, store, task_layer, concepts, row_cache["rows_of"])
        atomic_write_text(udir / "super_sub.csv", table.to_csv(index=False) if len(table) else "\n")
    log.info("%s", describe(unit, scales[unit]))
    if unit_missing:
        log.warning("super/sub analysis skipped for layer %d: no concepts at K=%d in %s (run concepts.discover "
                    "for that layer)", task_layer, cfg.discovery.k, concepts.path)
    ks = resolve_ks(list(cfg.neurons.ks), ranking.dim)
    rows = []
    if cfg.neurons.retrain or cfg.neurons.ablation:
        # the probe on all neurons chooses the penalty (on the dev rows); the top/random/bottom-k
        # probes reuse it, so the curves compare neuron sets, not penalties
        if full is None and cfg.ranking.method == "probe_weights":  # a reused ranking: its probe again, polished
            full = ranker_for(cfg).train(data.X_train, data.y_train, k, X[split.dev], ls.y[split.dev])
        elif full is None:
            full = fit_probe(ArrayDataModule(data.X_train, data.y_train, X[split.dev], ls.y[split.dev]), k, opt)
        if cfg.neurons.retrain:
            opt_k = replace(opt, select=False, l2=full.l2)
            rows += [{**r, "kind": "retrain"} for r in retrain_curve(ranking, data, ks, opt_k, cfg.neurons.seed)]
        if cfg.neurons.ablation:
            rows += [{**r, "kind": "ablation"} for r in ablation(ranking, full, data, ks, cfg.neurons.seed,
                                                                 cfg.neurons.ablate)]
    rows = [{"model": model, "unit": unit, "task": ls.name, **r} for r in rows]
    if cfg.neurons.plot:
        plots.salience_heatmap(ranking, udir / "salience.png", unit=unit)
        if len(unit_layers) > 1:
            plots.layer_distribution(ranking, udir / "layers.png")
        if rows:
            plots.accuracy_vs_k(pd.DataFrame(rows), udir / "accuracy_vs_k.png", f"{model} {unit}: {ls.name}, {ranking.method}")
    atomic_write_json(udir / "eval.json", {"fingerprint": ufp, "rank_seconds": rank_seconds, "rows": rows,
                                           "super_sub_missing": unit_missing,
                                           "probe": (ranking.meta.get("probe") if cfg.ranking.method == "probe_weights"
                                                     else probe_meta(full, opt) if full is not None else None)})
    return rows, table, unit_missing, ranking


def _log_wandb(cfg: RankConfig, out: Path, rankings, curves: pd.DataFrame, sub: pd.DataFrame, model: str,
               fps: dict | None = None) -> None:
    if cfg.logger.kind != "wandb":
        return
    fps = fps or {}
    import wandb

    from neurons.wandb_summary import accuracy_vs_k_plots
    from probing.loggers import run_config, start_run, wandb_root
    from probing.train import sweep_group

    units = "-".join(u.replace("layer_", "L").replace("layers_", "L") for u in sorted(rankings))
    task = cfg.labels.tag if cfg.labels.source == "tag" else cfg.labels.source
    run = start_run(cfg.logger, wandb_root(cfg), f"{model}-{cfg.corpus.name}-{units}-{task}-{cfg.ranking.method}",
                    sweep_group(cfg, f"neurons-{model}-{cfg.corpus.name}"), "rank",
                    [model, cfg.corpus.name, cfg.ranking.method, task],
                    run_config(cfg, RankConfig, store=fps.get("store"), ranking=out.name.rsplit("-", 1)[-1],
                               concepts=fps.get("concepts")))
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
