"""`python -m concepts.annotate`: label every concept with an LLM (or the offline alignment
annotator), write the labels into the concept records, and export the concept dataset.

Reads the concepts of `concepts.discover` for the same config (run or reused first), or the
folder named by `annotation.concepts`. Output, inside that concepts folder:
    layer_NN/concepts-K{K}.jsonl        the records, with this annotator's annotation added
    annotations/<annotator>-<model>-<prompt>-K{K}.json   usage, cost, counts per status
    dataset-K{K}/                       tcn/, concepts-K{K}.jsonl, concepts-K{K}.parquet, human-eval.csv
    explorer-K{K}.html                  refreshed with the labels
Every reply is cached on disk as it arrives, so a killed run loses nothing and a re-run sends
no request twice; `annotation.dry_run=true` shows the prompts and estimates without calling.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from concepts.annotation.annotators import Annotator, LLMAnnotator
from concepts.annotation.cache import ReplyCache
from concepts.annotation.config import AnnotateConfig
from concepts.annotation.dataset import (
    check_label_source,
    export_dataset,
    label_of_record,
    label_source_of,
    record_views_source,
)
from concepts.annotation.factory import make_annotator
from concepts.annotation.human_eval import write_sheet
from concepts.annotation.prompts import estimate_tokens
from concepts.annotation.replies import PARSER_VERSION
from concepts.core.artifacts import (
    atomic_publish_dir,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
    library_versions,
    read_manifest,
    unique_tmp,
)
from concepts.core.cli import model_slug
from concepts.core.config import validate
from concepts.core.confirm import confirm_large
from concepts.core.errors import UserError
from concepts.core.locks import unit_lock
from concepts.discovery.records import Annotation, Concept, read_concepts, write_concepts
from concepts.extraction.store import ActivationStore

log = logging.getLogger(__name__)


@dataclass
class AnnotateResult:
    concepts: Path  # the concepts folder
    layers: list[int]
    k: int
    statuses: dict[str, int]  # annotation status -> concepts
    usage: dict  # requests, cached, retries, failed, tokens
    cost_usd: float
    dataset: Path | None
    seconds: float


@dataclass
class ConceptRun:
    """The concepts of one discovery run: folder, store, layers done at K, sentences."""
    path: Path
    store: ActivationStore
    k: int
    layers: list[int]
    fingerprint: str  # of the discovery run

    def read(self, layer: int) -> list[Concept]:
        return read_concepts(self.path / f"layer_{layer:02d}" / f"concepts-K{self.k}.jsonl")

    def write(self, layer: int, concepts: list[Concept]) -> None:
        write_concepts(self.path / f"layer_{layer:02d}" / f"concepts-K{self.k}.jsonl", concepts)

    def sentences(self) -> list[list[str]]:
        return self.store.sentence_words()


def open_concepts(cfg: AnnotateConfig) -> ConceptRun:
    """The concepts named by `annotation.concepts`, else those of `concepts.discover` for this config."""
    k = cfg.discovery.k
    import concepts.discovery.stage as discover_stage

    if cfg.annotation.concepts:
        path = Path(cfg.annotation.concepts)
        manifest = discover_stage.read_concepts_folder(path, "annotation.concepts")
    else:
        path = discover_stage.run(cfg).path
        manifest = read_manifest(path)
    done = sorted(discover_stage.done_layers(path, k))  # from the files: every K the folder holds
    if not done:
        raise UserError(f"{path} has no layer clustered at K={k}; run concepts.discover with discovery.k={k}")
    store = ActivationStore(manifest["inputs"]["store"])
    if store.fingerprint != manifest["inputs"]["store_fingerprint"]:
        raise UserError(f"the activation store {store.path} changed after {path} was made; re-run concepts.discover")
    wanted = cfg.discovery.layer_list(store.layers)
    layers = [x for x in wanted if x in done]
    missing = [x for x in wanted if x not in done]
    if missing and cfg.discovery.layers != "all":
        raise UserError(f"layers {missing} of {path} are not clustered at K={k}; run concepts.discover for them")
    return ConceptRun(path, store, k, layers, manifest["fingerprint"])


def _first_error(anns: list[Annotation]) -> str:
    return next((a.description for a in anns if a.status == "error" and a.description), "every request failed")


def _select(concepts: list[Concept], max_concepts: int | None) -> list[Concept]:
    if max_concepts is None:
        return concepts
    return sorted(concepts, key=lambda c: (-c.size, c.concept_id))[:max_concepts]


def _estimate(annotator: Annotator, targets: dict[int, list[Concept]], cfg, sentences) -> tuple[list[str], int, int, float]:
    """The prompts (one JSON line per concept), the distinct requests among them (a prompt asked
    for two concepts is sent once; with `prompt.fallback_unique`, each concept's re-ask with its
    unique types is counted too, as a refused reply would send it), their estimated tokens, and
    the cost at most (every distinct request sent, every reply at `annotator.max_tokens`)."""
    lines, seen, tokens = [], set(), 0
    for layer, cs in targets.items():
        for c in cs:
            msgs = annotator.messages(c, sentences)
            asks = [msgs]
            if getattr(annotator, "fallback_unique", False):
                asks.append(annotator.messages(c, sentences, repeats=False))
            for m in asks:
                key = json.dumps(m, ensure_ascii=False, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    tokens += estimate_tokens(m)
            lines.append(json.dumps({"layer": layer, "concept_id": c.concept_id, "messages": msgs}, ensure_ascii=False))
    a = cfg.annotator
    cost = (tokens * a.price_input_per_1m + len(seen) * a.max_tokens * a.price_output_per_1m) / 1e6
    return lines, len(seen), tokens, cost


def _dry_run(annotator: Annotator, run: ConceptRun, targets: dict[int, list[Concept]], cfg, out: Path) -> AnnotateResult:
    lines, n, tokens, cost = _estimate(annotator, targets, cfg, run.sentences())
    a = cfg.annotator
    dump = out / f"dry-run-{cfg.prompt.id}-K{run.k}.jsonl"
    atomic_write_text(dump, "\n".join(lines) + "\n")
    if lines:
        first = json.loads(lines[0])["messages"]
        log.info("dry run: first prompt\n%s", "\n".join(f"[{m['role']}] {m['content']}" for m in first))
    log.info("dry run: at most %d requests (re-asks of refused replies included), about %d prompt tokens, at most %d reply tokens, estimated cost at most $%.4f; "
             "all prompts in %s", n, tokens, n * a.max_tokens, cost, dump)
    return AnnotateResult(run.path, run.layers, run.k, {}, {"requests": 0, "estimated_prompt_tokens": tokens},
                          cost, None, 0.0)


def merge(c: Concept, ann: Annotation, overwrite: bool = False) -> str:
    """Put `ann` into the record, replacing an earlier annotation of the same identity
    (annotator, model, prompt, generation settings). Never a usable label with a result that has
    none (an error, refusal, abstention, unparseable or truncated reply of a failed attempt), and
    never a usable label with a different one from another reply unless `overwrite` (the same
    reply read again, as after a parser fix, may change it). Returns "changed", "kept" (a
    different label was held back) or "same"."""
    key = (ann.annotator, ann.model, ann.prompt_id, ann.settings)
    same = [a for a in c.annotations if (a.annotator, a.model, a.prompt_id, a.settings) == key]
    has_label = [a for a in same if a.label and a.status == "ok"]
    new_label = bool(ann.label and ann.status == "ok")
    if has_label and not new_label:
        return "same"
    if same and same[-1] == ann:
        return "same"
    old = has_label[-1] if has_label else None
    if old is not None and not overwrite and old.label != ann.label and old.raw != ann.raw:
        return "kept"
    c.annotations = [a for a in c.annotations if (a.annotator, a.model, a.prompt_id, a.settings) != key] + [ann]
    return "changed"


def _report_name(cfg: AnnotateConfig, k: int) -> str:
    a = cfg.annotator
    offline = a.backend == "alignment"  # no model and no prompt
    return f"{a.backend}-{'alignment' if offline else model_slug(a.model)}-{'alignment' if offline else cfg.prompt.id}-K{k}.json"


def _identity(cfg: AnnotateConfig, crun: ConceptRun) -> str:
    """What the annotations of a layer depend on (not which layers a run asks for: each layer is
    a unit of its own, so annotating layers [3, 4] after [3] annotates layer 4 only)."""
    a = cfg.annotator
    return fingerprint({"annotator": {key: v for key, v in asdict(a).items()
                                      if key not in ("concurrency", "timeout", "max_connection_failures")},
                        "label_source": label_source_of(cfg), "retry_refused": cfg.annotation.retry_refused,
                        "overwrite": cfg.annotation.overwrite, "parser": PARSER_VERSION,
                        "prompt": asdict(cfg.prompt), "max_concepts": cfg.annotation.max_concepts,
                        "concepts": crun.fingerprint})


def _done(report: dict | None, ident: str, export: bool) -> dict[int, dict]:
    """Layer -> statuses of the layers a previous run annotated with this identity."""
    if not report or report.get("fingerprint") != ident or report.get("exported", False) != export:
        return {}
    per_layer = report.get("per_layer") or {}
    return {int(layer): st for layer, st in per_layer.items() if "error" not in st}


def _result(crun: ConceptRun, report: dict, layers: list[int], dataset: Path | None, t0: float) -> AnnotateResult:
    statuses: Counter = Counter()
    for layer in layers:
        statuses.update(report["per_layer"][str(layer)])
    return AnnotateResult(crun.path, layers, crun.k, dict(statuses), report.get("usage", {}), report.get("cost_usd", 0.0),
                          dataset, time.perf_counter() - t0)


def run(cfg: DictConfig | AnnotateConfig) -> AnnotateResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, AnnotateConfig)
    crun = open_concepts(cfg)
    k = crun.k
    out = crun.path / "annotations"
    previous = out / _report_name(cfg, k)
    ident = _identity(cfg, crun)
    dataset = crun.path / f"dataset-K{k}" if cfg.annotation.export else None
    if cfg.annotation.dry_run:
        return _annotate(cfg, crun, crun.layers, ident, previous, t0)
    if set(crun.layers) <= set(_done(_read_report(previous), ident, cfg.annotation.export)):
        log.info("annotations complete, nothing to do: %s", previous)
        return _result(crun, _read_report(previous), crun.layers, dataset, t0)
    # one annotation of a concepts folder at a time: the records are read, changed and written whole
    with unit_lock(out, f"annotate-K{k}", f"the annotation of {crun.path} at K={k}"):
        done = _done(_read_report(previous), ident, cfg.annotation.export)
        todo = [layer for layer in crun.layers if layer not in done]
        if not todo:
            log.info("annotations complete (by another process meanwhile), nothing to do: %s", previous)
            return _result(crun, _read_report(previous), crun.layers, dataset, t0)
        return _annotate(cfg, crun, todo, ident, previous, t0, done)


def _read_report(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged report: annotate again (replies come from the cache)


def _annotate(cfg: AnnotateConfig, crun: ConceptRun, todo: list[int], ident: str, previous: Path, t0: float,
              done: dict[int, dict] | None = None) -> AnnotateResult:
    """Annotate the layers `todo` of the concepts folder (the others of the run are `done`), write
    the records, the folder's dataset and explorer, then the report (last: its layers are done)."""
    a, out = cfg.annotator, crun.path / "annotations"
    done = dict(done or {})
    cache = None if cfg.annotator.backend == "alignment" else ReplyCache(cfg.annotation.cache)
    try:
        annotator = make_annotator(cfg, cache)
        by_layer = {layer: crun.read(layer) for layer in todo}
        targets = {layer: _select(cs, cfg.annotation.max_concepts) for layer, cs in by_layer.items()}
        if cfg.annotation.dry_run:
            if not isinstance(annotator, LLMAnnotator):
                raise UserError("annotation.dry_run=true needs an LLM annotator (annotator=openai or hf_local)")
            return _dry_run(annotator, crun, targets, cfg, out)
        sentences = crun.sentences()
        flat = [c for layer in todo for c in targets[layer]]
        if isinstance(annotator, LLMAnnotator):  # requests and cost, before any is sent
            _announce_requests(annotator, targets, cfg, sentences)
        log.info("annotating %d concepts of layers %s with %s (%s, prompt %s)", len(flat),
                 ",".join(map(str, todo)), annotator.name, annotator.model, annotator.prompt_id)
        anns = annotator.annotate(flat, sentences)
        client = annotator.client if isinstance(annotator, LLMAnnotator) else None
        if client is not None and flat and client.usage.answered + client.usage.cached == 0:
            raise UserError(f"no request was answered ({client.broken or _first_error(anns)}); no record was changed "
                            "and nothing was exported. Check the server and re-run")
        merged = Counter(merge(c, ann, cfg.annotation.overwrite) for c, ann in zip(flat, anns))
        changed, kept = merged["changed"], merged["kept"]
        if kept:
            log.warning("kept %d existing labels that this run's replies would change (annotation.overwrite=true "
                        "replaces them)", kept)
        for layer in todo:
            crun.write(layer, by_layer[layer])
        i = 0
        for layer in todo:
            n = len(targets[layer])
            done[layer] = dict(Counter(x.status for x in anns[i:i + n]))
            i += n
        usage = client.usage.to_dict() if client is not None else {}
        cost = client.usage.cost(a.price_input_per_1m, a.price_output_per_1m) if usage else 0.0
        if client is not None and client.broken:
            raise UserError(f"{client.broken}. The {client.usage.answered + client.usage.cached} replies received so "
                            f"far are kept ({changed} records updated, replies cached in {cfg.annotation.cache}); "
                            "nothing was exported. Re-run when the server is back: answered prompts are not sent again")
    finally:
        if cache is not None:
            cache.close()
    report = _run_report(cfg, annotator, ident, crun.k, done, anns, usage, cost, client, changed, kept)
    dataset = _write_views(cfg, crun, sentences)
    atomic_write_json(previous, report)  # last: the layers it lists are annotated
    return _result(crun, report, crun.layers, dataset, t0)


def _announce_requests(annotator, targets: dict, cfg: AnnotateConfig, sentences) -> None:
    """Say how many requests and what they may cost, before any is sent; ask first above
    annotation.confirm_above_usd."""
    a = cfg.annotator
    lines, n_distinct, tokens, cost_max = _estimate(annotator, targets, cfg, sentences)
    what = (f"an LLM annotation: {len(lines)} concepts, at most {n_distinct} distinct requests (re-asks of "
            f"refused replies included; cached replies are not sent again), about {tokens:,} prompt tokens, "
            f"at most ${cost_max:.4f}")
    log.info("%s with %s at %s", what, a.model, a.base_url or "the OpenAI API")
    confirm_large(what, cost_max, cfg.annotation.confirm_above_usd, "annotation.confirm_above_usd")


def _run_report(cfg: AnnotateConfig, annotator, ident: str, k: int, done: dict, anns, usage: dict, cost: float, client,
                changed: int, kept: int) -> dict:
    """What the run did (the annotations folder's report), logged as it is made."""
    a = cfg.annotator
    statuses = dict(Counter(x.status for x in anns))
    cached_cost = client.usage.cached_cost(a.price_input_per_1m, a.price_output_per_1m) if usage else 0.0
    report = {
        "fingerprint": ident, "exported": cfg.annotation.export,
        "annotator": annotator.name, "model": annotator.model, "prompt_id": annotator.prompt_id, "k": k,
        "layers": sorted(done), "per_layer": {str(layer): st for layer, st in sorted(done.items())},
        "concepts": len(anns), "statuses": statuses, "usage": usage, "cost_usd": cost,
        "cost_cached_usd": cached_cost, "cost_total_usd": cost + cached_cost, "records_changed": changed,
        "labels_kept": kept,
        "label_source": label_source_of(cfg), "versions": library_versions(),
    }
    log.info("labels: %s", ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
    if usage:
        log.info("requests sent %d (retries %d, failed %d), answered from cache %d; tokens %d in / %d out; "
                 "estimated cost $%.4f for this run, $%.4f for the cached replies it reused ($%.4f in all)",
                 usage["requests"], usage["retries"], usage["failed"], usage["cached"], usage["prompt_tokens"],
                 usage["completion_tokens"], cost, cached_cost, cost + cached_cost)
    return report


def _write_views(cfg: AnnotateConfig, crun: ConceptRun, sentences) -> Path | None:
    """The folder's dataset and explorer at K, covering every layer it holds, whichever this run
    annotated; returns the dataset folder (None when not exported)."""
    k = crun.k
    dataset = None
    with unit_lock(crun.path, f"views-K{k}", f"the folder views of {crun.path}"):
        import concepts.discovery.stage as discover_stage

        every = {layer: crun.read(layer) for layer in sorted(discover_stage.done_layers(crun.path, k))}
        source = check_label_source(cfg, every, crun.path)
        record_views_source(crun.path, k, source)
        if cfg.annotation.export:
            dataset = write_dataset(crun.path / f"dataset-K{k}", every, sentences, k, cfg, source)
            log.info("concept dataset (every layer of %s): %s", crun.path.name, dataset)
        if cfg.discovery.explorer:
            from concepts.discovery.explorer import write_explorer

            page = crun.path / f"explorer-K{k}.html"
            write_explorer(page, every, sentences, f"{cfg.model.name or cfg.model.name_or_path} · {cfg.corpus.name} · K={k}",
                           label_source=source)
            log.info("open the concept explorer: %s", page.resolve().as_uri())
    return dataset


def write_dataset(root: Path, by_layer: dict[int, list[Concept]], sentences, k: int, cfg: AnnotateConfig,
                  source: str) -> Path:
    """The released dataset of `by_layer` (every format, and the human-evaluation sheet) in `root`,
    written in a temp folder and published whole: no format ever holds other layers than the rest."""
    root = Path(root)
    tmp = unique_tmp(root)
    try:
        export_dataset(tmp, by_layer, sentences, k, hf=cfg.annotation.export_hf, source=source)
        write_sheet(tmp / "human-eval.csv", by_layer, cfg.annotation.human_eval_per_layer, cfg.annotation.seed,
                    label_of=lambda c: (a.label if (a := label_of_record(c, source)) else None),
                    human_of=lambda c: next((x.label for x in c.annotations if x.annotator == "alignment" and x.label),
                                            None))
        atomic_publish_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
