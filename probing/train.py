"""`python -m probing.train`: probing classifiers per layer, with control tasks.

    python -m probing.train                                  # UPOS, every layer, control task
    python -m probing.train labels.tag=xpos layer=3
    python -m probing.train labels=concepts                  # multi-class over the 20 largest labelled concepts
    python -m probing.train labels=concept_binary            # a binary probe per concept
    python -m probing.train -m layer=range(0,7) hydra/launcher=joblib logger=wandb

Each (layer, task) is a resumable unit saved as JSON under
`<workspace>/<model>/<corpus>-<fp>/probing/<source>-<fp>/layer_NN/<task>.json`, with a
summary table (CSV, Parquet) and plot of the run next to them; a multirun also gets one
summary in its sweep folder (probing.summary).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
from concepts.annotation.dataset import label_of_record, label_source_of
from concepts.core.artifacts import atomic_write_json, fingerprint, read_manifest
from concepts.core.cli import hydra_entry, invocation_stamp, model_slug
from concepts.core.config import validate
from concepts.core.errors import UserError
from concepts.core.locks import unit_lock
from concepts.discovery.records import read_concepts
from probing.config import TrainConfig, register_probing_configs
from probing.data import LabelSet, StoreDataModule, control_labels, split_examples
from probing.fit import FitOptions, evaluate, fit_probe
from probing.labels import concept_binary_labels, concept_labels, tag_labels
from probing.loggers import (
    already_logged,
    finish,
    make_logger,
    mark_logged,
    run_config,
    start_run,
    wandb_root,
)
from probing.results import INTERVALS, ProbeResult
from probing.stats import (
    balanced_accuracy,
    lexical_accuracy,
    majority_baseline,
    paired_bootstrap,
    sentence_bootstrap,
    wilson,
)
from probing.summary import summarize_results, write_summary

log = logging.getLogger(__name__)
register_probing_configs()


@dataclass
class TrainResult:
    path: Path  # the probing folder of this label source and settings
    results: list[ProbeResult]
    summary: pd.DataFrame
    seconds: float


def fit_options(cfg: TrainConfig) -> FitOptions:
    return FitOptions(**asdict(cfg.probe), seed=cfg.probing.seed)  # ProbeConfig's fields are FitOptions' own


class ConceptSource:
    """Where concept labels come from: a concepts folder made from the probed store."""

    def __init__(self, cfg: TrainConfig, store, path: Path | None = None):
        """`path`: a concepts folder; None = `labels.concepts`, else concepts.discover for this config."""
        if path is not None or cfg.labels.concepts:
            from concepts.discovery.stage import read_concepts_folder

            path = Path(path or cfg.labels.concepts)
            manifest = read_concepts_folder(path, "labels.concepts")
        else:
            from concepts.annotation.stage import open_concepts

            path = open_concepts(cfg).path
            manifest = read_manifest(path)
        inputs = manifest["inputs"]  # made from this store, or from a sampled store drawn from it
        if inputs.get("store_source_fingerprint", inputs["store_fingerprint"]) != store.source_fingerprint:
            raise UserError(
                f"the concepts in {path} were made from the store {manifest['inputs']['store']}, not from the store "
                f"probed here ({store.path}): another model or corpus; pass matching model/corpus options or "
                "re-run concepts.discover on this store")
        self.path, self.k, self.source, self.store = path, cfg.discovery.k, label_source_of(cfg), store
        if cfg.labels.source != "tag" and cfg.labels.require_label and not self._has_labels():
            # chaining: labels come from concepts.annotate (offline alignment unless an LLM is configured)
            import concepts.annotation.stage as annotate_stage

            log.info("the concepts in %s have no labels yet: running concepts.annotate first (annotator.backend=%s)",
                     path, cfg.annotator.backend)
            annotate_stage.run(replace(cfg, annotation=replace(cfg.annotation, concepts=str(path))))
        # the folder and the label rule; each layer's records count per layer (`layer_fingerprint`),
        # so clustering another layer later never makes this layer's probes stale
        self.fingerprint = fingerprint({"concepts": manifest["fingerprint"], "k": self.k,
                                        "label_source": label_source_of(cfg)})
        self._layer_fps: dict[int, str | None] = {}

    def layer_fingerprint(self, layer: int) -> str | None:
        """The content of one layer's records as they stand (annotation adds labels to them later):
        a probe or ranking on that layer's concept labels is stale once it changes. None if missing."""
        if layer not in self._layer_fps:
            f = self.path / f"layer_{layer:02d}" / f"concepts-K{self.k}.jsonl"
            self._layer_fps[layer] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
        return self._layer_fps[layer]

    def _has_labels(self) -> bool:
        """Whether any record holds a label of this run's label source (`label_source_of`)."""
        return any(label_of_record(c, self.source) is not None for f in self.path.glob(f"layer_*/concepts-K{self.k}.jsonl")
                   for c in read_concepts(f))

    def has_layer(self, layer: int) -> bool:
        return (self.path / f"layer_{layer:02d}" / f"concepts-K{self.k}.jsonl").exists()

    def layer(self, layer: int):
        f = self.path / f"layer_{layer:02d}" / f"concepts-K{self.k}.jsonl"
        if not f.exists():
            raise UserError(f"{f} is missing: layer {layer} is not clustered at K={self.k}; run concepts.discover for it")
        return read_concepts(f)


def tasks_for(cfg: TrainConfig, tokens: pd.DataFrame, layer: int, concepts: ConceptSource | None) -> list[LabelSet]:
    lab, minimum = cfg.labels, cfg.probing.min_examples
    if lab.source == "tag":
        return [tag_labels(tokens, lab.tag, minimum, lab.max_tokens, cfg.probing.seed)]
    cs = concepts.layer(layer if lab.concept_layer is None else lab.concept_layer)
    if lab.require_label and not any(label_of_record(c, label_source_of(cfg)) is not None for c in cs):
        raise UserError(f"the concepts in {concepts.path} have no labels yet; run concepts.annotate first "
                        "(or set labels.require_label=false)")
    where = str(concepts.path)
    source = label_source_of(cfg)
    # positives=nearest: tokens join the concept of the nearest centroid at the layer the concepts come from
    acts = concepts.store.layer(cs[0].layer) if lab.positives == "nearest" and cs else None
    if lab.source == "concepts":
        return [concept_labels(tokens, cs, lab.top, lab.require_label, minimum, where, source, lab.positives, acts,
                               lab.max_positives, cfg.probing.seed)]
    return concept_binary_labels(tokens, cs, lab.top, lab.require_label, minimum, cfg.probing.seed, where,
                                 lab.negatives, lab.min_rows, source, lab.positives, acts, lab.max_positives)


def result_fingerprint(cfg: TrainConfig, fp: str, concepts: ConceptSource | None, layer: int) -> str:
    """A (layer, task) result's identity: the probing folder's, and for concept labels the records of
    the layer whose concepts label it (`labels.concept_layer`, else the probed layer)."""
    if concepts is None:
        return fp
    source_layer = layer if cfg.labels.concept_layer is None else cfg.labels.concept_layer
    return fingerprint({"probes": fp, "records": concepts.layer_fingerprint(source_layer)})


def probe_config(cfg: TrainConfig, store, fp: str, concepts_fp: str | None, layer: int, task: str) -> dict:
    """A probe run's W&B config: the options a probe uses (not ranking or pipeline options), this
    run's layer and task, fingerprints."""
    return {**run_config(cfg, TrainConfig, store=store.fingerprint, probes=fp, concepts=concepts_fp),
            "layer": layer, "task": task}


def probe_run_name(cfg: TrainConfig, model: str, layer: int, task: str) -> str:
    return f"{model}-{cfg.corpus.name}-L{layer}-{task}-{cfg.probe.kind}"


def log_cached(cfg: TrainConfig, r: ProbeResult, config: dict, group: str, model: str) -> None:
    """A result reused from disk gets its W&B run (marked cached) once per W&B folder and project,
    so turning W&B on later logs everything, and a re-run with nothing changed logs nothing new."""
    key = {"probe": r.fingerprint, "layer": r.layer, "task": r.task}
    if already_logged(cfg.logger, wandb_root(cfg), key):
        return
    run = start_run(cfg.logger, wandb_root(cfg), probe_run_name(cfg, model, r.layer, r.task), group, "probe",
                    [model, cfg.corpus.name, f"layer{r.layer}", cfg.labels.source, r.task, cfg.probe.kind, "cached"],
                    config)
    run.summary.update({**{k: v for k, v in r.row().items() if isinstance(v, float)}, "cached": True,
                        "flags": ";".join(r.flags), **{f"flag_{f}": 1.0 for f in r.flags},
                        **({"skipped": r.skipped} if r.skipped else {})})
    run.finish()
    mark_logged(cfg.logger, wandb_root(cfg), key)


@dataclass
class _Scored:
    """One split's fit and its test scores (the task probe, and its control task)."""
    fitted: object
    split: object
    y_test: np.ndarray
    pred: np.ndarray
    control_y: np.ndarray | None = None
    control_pred: np.ndarray | None = None
    control_seconds: float | None = None
    dev_accuracy: float | None = None

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.pred == self.y_test))

    @property
    def selectivity(self) -> float | None:
        if self.control_pred is None:
            return None
        return self.accuracy - float(np.mean(self.control_pred == self.control_y))


def _fit_split(cfg: TrainConfig, store, layer: int, ls: LabelSet, split, opts, logger=None) -> _Scored:
    """Fit the probe (and its control task, with the probe's own penalty) on one split."""
    dm = StoreDataModule(store, layer, ls, split)
    fitted = fit_probe(dm, len(ls.classes), opts, logger)
    X_test, y_test = dm.arrays["test"]
    out = _Scored(fitted, split, np.asarray(y_test), fitted.predict(X_test))
    if dm.has("dev"):
        X_dev, y_dev = dm.arrays["dev"]
        out.dev_accuracy = float(np.mean(fitted.predict(X_dev) == y_dev))
    if cfg.probing.control:
        k = len(ls.classes)
        yc = control_labels(ls.words, ls.y, split.train, k, cfg.probing.seed)
        cdm = dm.with_labels(yc[split.train], yc[split.dev], yc[split.test])
        # the same probe: the task probe's penalty, not one chosen again for random labels
        cfit = fit_probe(cdm, k, replace(opts, select=False, l2=fitted.l2))
        out.control_y, out.control_pred, out.control_seconds = yc[split.test], cfit.predict(X_test), cfit.seconds
    return out


def positive_class(ls: LabelSet) -> int | None:
    """The concept's class of a binary concept task (the one that is not "other"), else None."""
    if len(ls.classes) == 2 and "other" in ls.classes:
        return 1 - ls.classes.index("other")
    return None


def skip_reason(cfg: TrainConfig, ls: LabelSet, split) -> str | None:
    """Why a task cannot be scored on this split (None: it can)."""
    n_test = len(split.test)
    if n_test < cfg.probing.min_test:
        return (f"{n_test} test tokens (< probing.min_test={cfg.probing.min_test}); use more data or lower "
                "probing.min_test")
    if len(ls.classes) == 2:
        counts = np.bincount(ls.y[split.test], minlength=2)
        if counts.min() < cfg.probing.min_test_class:
            fix = ("labels.positives=nearest draws every token nearest the concept's centroid"
                   if cfg.labels.source == "concept_binary" and cfg.labels.positives == "members" else "use more data")
            return (f"{int(counts.min())} test tokens of class {ls.classes[int(counts.argmin())]!r} "
                    f"(< probing.min_test_class={cfg.probing.min_test_class}); {fix}, or lower probing.min_test_class")
    return None


def probe_one(cfg: TrainConfig, store, layer: int, ls: LabelSet, fp: str, model: str, group: str,
              out: Path, concepts_fp: str | None = None) -> ProbeResult:
    """Train and score one probe (and its control task). A task whose test split is too small to
    score (`probing.min_test` tokens, and for a binary task `probing.min_test_class` of each
    class) is a skipped result: its reason, no numbers."""
    p = cfg.probing
    split = split_examples(ls, cfg.split.by, cfg.split.train, cfg.split.dev, cfg.split.seed, cfg.split.stratify)
    k = len(ls.classes)
    test_per_class = {ls.classes[c]: int(n) for c, n in enumerate(np.bincount(ls.y[split.test], minlength=k))}
    reason = skip_reason(cfg, ls, split)
    if reason:
        log.warning("layer %d %s: skipped, %s", layer, ls.name, reason)
        return ProbeResult.skip(model, layer, cfg.labels.source, ls.name, k, fp, reason, len(split.train),
                                len(split.dev), len(split.test), test_per_class)
    opts = fit_options(cfg)
    tags = [model, cfg.corpus.name, f"layer{layer}", cfg.labels.source, ls.name, cfg.probe.kind]
    logger = make_logger(cfg.logger, out, probe_run_name(cfg, model, layer, ls.name), group, tags,
                         probe_config(cfg, store, fp, concepts_fp, layer, ls.name), wandb_root(cfg))
    sc = _fit_split(cfg, store, layer, ls, split, opts, logger)
    fitted, y_test, pred = sc.fitted, sc.y_test, sc.pred
    m = evaluate(y_test, pred, ls.classes)
    ytr = ls.y[split.train]
    lexical, _ = lexical_accuracy(ls.words[split.train], ytr, ls.words[split.test], y_test, k)
    majority = majority_baseline(ytr, y_test, k)
    dev_acc = sc.dev_accuracy
    hits = pred == y_test
    control_acc = selectivity = None
    control_ci = sel_ci = (None, None)
    if p.interval == "sentence":
        boot = sentence_bootstrap(ls.sentences[split.test], y_test, pred, sc.control_y, sc.control_pred,
                                  n_boot=p.n_boot, seed=p.seed)
        acc_ci, bal_ci = boot.accuracy, boot.balanced_accuracy
    else:
        acc_ci, bal_ci = wilson(int(hits.sum()), len(hits)), (None, None)
    if sc.control_pred is not None:
        chits = sc.control_pred == sc.control_y
        control_acc = float(np.mean(chits))
        selectivity = m.accuracy - control_acc
        if p.interval == "sentence":
            control_ci, sel_ci = boot.control, boot.selectivity
        else:
            control_ci, sel_ci = wilson(int(chits.sum()), len(chits)), paired_bootstrap(hits, chits, seed=p.seed)
    pos = positive_class(ls)
    flags = result_flags(cfg, m.accuracy, acc_ci, lexical, majority, sel_ci, test_per_class)
    sel = fitted.selection
    result = ProbeResult(model, layer, cfg.labels.source, ls.name, k, len(split.train), len(split.dev),
                         len(split.test), m.accuracy, m.macro_f1, dev_acc, control_acc, selectivity, fitted.seconds,
                         fitted.steps, fitted.converged, fp, m.per_class, *acc_ci, *control_ci, *sel_ci, lexical,
                         majority, fitted.l2, sel.C if sel else None, flags,
                         control_seconds=sc.control_seconds, balanced_accuracy=balanced_accuracy(y_test, pred),
                         balanced_low=bal_ci[0], balanced_high=bal_ci[1],
                         positive_f1=m.per_class[ls.classes[pos]]["f1"] if pos is not None else None,
                         test_per_class=test_per_class, interval=INTERVALS[p.interval])
    if p.resplits:
        _resplit(cfg, store, layer, ls, opts, sc, result)
    metrics = {k: v for k, v in result.row().items() if isinstance(v, float)}
    finish(logger, {**metrics, **{f"flag_{f}": 1.0 for f in flags}}, {"flags": ";".join(flags)})
    if cfg.logger.kind == "wandb":
        mark_logged(cfg.logger, wandb_root(cfg), {"probe": fp, "layer": layer, "task": ls.name})
    return result


def result_flags(cfg: TrainConfig, accuracy: float, acc_ci, lexical: float, majority: float, sel_ci,
                 test_per_class: dict) -> list[str]:
    """The caveats of a probe number (`probing.results`)."""
    flags = []
    if cfg.split.by == "type" and cfg.probing.control:
        flags.append("type_split_control")
    if lexical >= acc_ci[0]:
        flags.append("below_lexical")
    if accuracy < majority:
        flags.append("below_majority")
    if min(test_per_class.values()) < cfg.probing.min_test_class:
        flags.append("few_positives")
    if sel_ci[0] is not None and sel_ci[0] <= 0:
        flags.append("not_selective")
    return flags


def _resplit(cfg: TrainConfig, store, layer: int, ls: LabelSet, opts, first: _Scored, result: ProbeResult) -> None:
    """Re-split (split seeds seed+1 ... seed+N) and re-fit; the spread of accuracy and selectivity
    over all N+1 splits goes into `result` (splits that cannot be scored are left out)."""
    accs, sels = [first.accuracy], [first.selectivity]
    for i in range(1, cfg.probing.resplits + 1):
        split = split_examples(ls, cfg.split.by, cfg.split.train, cfg.split.dev, cfg.split.seed + i, cfg.split.stratify)
        if skip_reason(cfg, ls, split):
            continue
        sc = _fit_split(cfg, store, layer, ls, split, opts)
        accs.append(sc.accuracy)
        sels.append(sc.selectivity)
    result.resplits = len(accs) - 1
    result.resplit_accuracy_sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else None
    result.resplit_accuracy_min, result.resplit_accuracy_max = float(min(accs)), float(max(accs))
    if sels[0] is not None and len(sels) > 1:
        result.resplit_selectivity_sd = float(np.std(sels, ddof=1))


def labels_identity(lab) -> dict:
    """The label options that apply to `lab.source` (the concepts folder counts by its content,
    see `ConceptSource.fingerprint`, not by its path)."""
    if lab.source == "tag":
        return {"source": "tag", "tag": lab.tag, "max_tokens": lab.max_tokens}
    out = {"source": lab.source, "concept_layer": lab.concept_layer, "top": lab.top, "require_label": lab.require_label}
    if lab.source == "concept_binary":
        out.update(negatives=lab.negatives, min_rows=lab.min_rows)
    if lab.positives != "members":
        out.update(positives=lab.positives, max_positives=lab.max_positives)
    return out


def probe_identity(probe) -> dict:
    """The probe options that change a fit of this kind and optimizer (not the device)."""
    out = {"kind": probe.kind, "optimizer": probe.optimizer, "transform": probe.transform, "balanced": probe.balanced,
           "l1": probe.l1, "lr": probe.lr}
    if probe.kind == "mlp":
        out["hidden"] = probe.hidden
    if probe.optimizer == "lbfgs":
        out.update(max_iter=probe.max_iter, tol=probe.tol, select=probe.select)
        out.update(c_grid=list(probe.c_grid)) if probe.select else out.update(l2=probe.l2)
    else:
        out.update(batch_size=probe.batch_size, max_epochs=probe.max_epochs, patience=probe.patience, l2=probe.l2)
    return out


def probing_path(cfg: TrainConfig, store, concepts: ConceptSource | None) -> tuple[Path, str]:
    ident = {"store": store.fingerprint, "labels": labels_identity(cfg.labels), "split": asdict(cfg.split),
             "probe": probe_identity(cfg.probe),
             "probing": {k: v for k, v in asdict(cfg.probing).items() if k != "plot"},
             "concepts": concepts.fingerprint if concepts else None}
    fp = fingerprint(ident)
    family = f"tag-{cfg.labels.tag}" if cfg.labels.source == "tag" else f"{cfg.labels.source}-top{cfg.labels.top}"
    return store.path.parent / "probing" / f"{family}-{fp[:8]}", fp


def _done(f: Path, rfp: str) -> ProbeResult | None:
    """The result saved at `f` when it is current (same fingerprint), else None."""
    if f.exists():
        r = ProbeResult.load(f)
        if r.fingerprint == rfp:
            return r
    return None


def sweep_group(cfg: TrainConfig, family: str) -> str:
    """The W&B group of an invocation: `logger.group` if set, a multirun's sweep folder name, else
    `family` with this invocation's stamp (so separate invocations never share a group)."""
    if cfg.logger.group:
        return cfg.logger.group
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return f"sweep-{Path(hc.sweep.dir).name}"
    except ValueError:
        pass
    return f"{family}-{invocation_stamp()}"


def run(cfg: DictConfig | TrainConfig) -> TrainResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, TrainConfig)
    from concepts.discovery.stage import open_store

    store = open_store(cfg)
    layers = cfg.layer_list(store.layers)
    concepts = ConceptSource(cfg, store) if cfg.labels.source != "tag" else None
    out, fp = probing_path(cfg, store, concepts)
    model = cfg.model.name or model_slug(cfg.model.name_or_path)
    if cfg.split.by == "type" and cfg.probing.control:
        log.warning("split.by=type: no test word type is seen in training, so the control task is at chance and "
                    "selectivity is inflated (flagged type_split_control); compare with lexical_accuracy, or use "
                    "split=sentence for selectivity")
    group = sweep_group(cfg, out.name.rsplit("-", 1)[0])
    concepts_fp = concepts.fingerprint if concepts else None
    tokens = store.tokens()
    results, trained = [], 0
    bar = tqdm(layers, desc=f"probe {out.name.rsplit('-', 1)[0]}", unit="layer", disable=not cfg.extraction.progress)
    tag_tasks = tasks_for(cfg, tokens, layers[0], None) if cfg.labels.source == "tag" else None  # same for every layer
    for layer in bar:
        rfp = result_fingerprint(cfg, fp, concepts, layer)
        for ls in tag_tasks or tasks_for(cfg, tokens, layer, concepts):
            f = out / f"layer_{layer:02d}" / f"{ls.name}.json"
            r = _done(f, rfp)
            if r is None:  # not done here: compute it, unless another process is at it (then reuse theirs)
                with unit_lock(f.parent, ls.name, f"probe layer {layer} {ls.name}") as waited:
                    r = _done(f, rfp) if waited else None
                    if r is None:
                        r = probe_one(cfg, store, layer, ls, rfp, model, group, out, concepts_fp)
                        r.save(f)
                        trained += 1
                        if r.skipped is None:
                            log.info("layer %d %s: accuracy %.3f [%.3f, %.3f], balanced %.3f, lexical %.3f, majority "
                                     "%.3f%s (%d classes, %d train, %.1f s)%s", layer, ls.name, r.accuracy,
                                     r.accuracy_low, r.accuracy_high, r.balanced_accuracy, r.lexical_accuracy,
                                     r.majority_accuracy, f", control {r.control_accuracy:.3f}, selectivity "
                                     f"{r.selectivity:.3f}" if r.control_accuracy is not None else "", r.classes,
                                     r.n_train, r.seconds, f"; flags: {', '.join(r.flags)}" if r.flags else "")
                        results.append(r)
                        continue
                    log.info("layer %d %s: probed by another process meanwhile; reused", layer, ls.name)
            results.append(r)
            if cfg.logger.kind == "wandb":
                log_cached(cfg, r, probe_config(cfg, store, rfp, concepts_fp, layer, ls.name), group, model)
    # the folder's own summary covers every current result in it (every layer any run probed with
    # these settings); the run's summary, below, covers this run's layers only
    title = f"{model}: {out.name.rsplit('-', 1)[0]}"
    if trained or not (out / "summary.parquet").exists():
        with unit_lock(out, "summary", f"the summary of {out}"):
            every = [r for r in (ProbeResult.load(f) for f in sorted(out.glob("layer_*/*.json")))
                     if r.fingerprint == result_fingerprint(cfg, fp, concepts, r.layer)]
            write_summary(out, every, title=title, plot=cfg.probing.plot)
    summary = summarize_results(results)
    log.info("probing results: %s", out)
    return TrainResult(out, results, summary, time.perf_counter() - t0)


def save_results(job_dir: Path, results: list[ProbeResult]) -> None:
    """Leave probe results in a Hydra job folder, where the sweep summary collects them."""
    atomic_write_json(Path(job_dir) / "probe-results.json", [asdict(r) for r in results])


main = hydra_entry("train", run, on_result=lambda job_dir, result: save_results(job_dir, result.results))

if __name__ == "__main__":
    main()
