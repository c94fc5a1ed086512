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
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from concepts.annotation.annotators import Annotator, LLMAnnotator
from concepts.annotation.cache import ReplyCache
from concepts.annotation.dataset import export_dataset, label_of_record
from concepts.annotation.factory import make_annotator
from concepts.annotation.human_eval import write_sheet
from concepts.annotation.prompts import estimate_tokens
from concepts.artifacts import (
    atomic_write_json,
    atomic_write_text,
    fingerprint,
    library_versions,
    read_manifest,
)
from concepts.cli import hydra_entry, model_slug
from concepts.config import AnnotateConfig, register_configs, validate
from concepts.confirm import confirm_large
from concepts.errors import UserError
from concepts.records import Annotation, Concept, read_concepts, write_concepts
from concepts.store import ActivationStore

log = logging.getLogger(__name__)
register_configs()


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
    import concepts.discover as discover_stage

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
    wanted = cfg.discovery.layer_list(store.n_layers)
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
    for two concepts is sent once), their estimated tokens, and the cost at most (every distinct
    prompt sent, every reply at `annotator.max_tokens`)."""
    lines, seen, tokens = [], set(), 0
    for layer, cs in targets.items():
        for c in cs:
            msgs = annotator.messages(c, sentences)
            key = json.dumps(msgs, ensure_ascii=False, sort_keys=True)
            if key not in seen:
                seen.add(key)
                tokens += estimate_tokens(msgs)
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
    log.info("dry run: %d requests, about %d prompt tokens, at most %d reply tokens, estimated cost at most $%.4f; "
             "all prompts in %s", n, tokens, n * a.max_tokens, cost, dump)
    return AnnotateResult(run.path, run.layers, run.k, {}, {"requests": 0, "estimated_prompt_tokens": tokens},
                          cost, None, 0.0)


def merge(c: Concept, ann: Annotation) -> bool:
    """Put `ann` into the record, replacing an earlier annotation of the same identity
    (annotator, model, prompt, generation settings), but never a usable label with a result
    that has none (an error, refusal, unparseable or truncated reply of a failed attempt).
    Returns whether the record changed."""
    key = (ann.annotator, ann.model, ann.prompt_id, ann.settings)
    same = [a for a in c.annotations if (a.annotator, a.model, a.prompt_id, a.settings) == key]
    if any(a.label and a.status == "ok" for a in same) and not (ann.label and ann.status == "ok"):
        return False
    if same and same[-1] == ann:
        return False
    c.annotations = [a for a in c.annotations if (a.annotator, a.model, a.prompt_id, a.settings) != key] + [ann]
    return True


def run(cfg: DictConfig | AnnotateConfig) -> AnnotateResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, AnnotateConfig)
    crun = open_concepts(cfg)
    k = crun.k
    out = crun.path / "annotations"
    a = cfg.annotator
    offline = a.backend == "alignment"  # no model and no prompt
    name = f"{a.backend}-{'alignment' if offline else model_slug(a.model)}-{'alignment' if offline else cfg.prompt.id}-K{k}.json"
    ident = fingerprint({"annotator": {key: v for key, v in asdict(a).items()
                                       if key not in ("concurrency", "timeout", "max_connection_failures")},
                         "label_source": cfg.annotation.label_source, "retry_refused": cfg.annotation.retry_refused,
                         "prompt": asdict(cfg.prompt), "max_concepts": cfg.annotation.max_concepts,
                         "layers": crun.layers, "concepts": crun.fingerprint})
    previous = out / name
    if not cfg.annotation.dry_run and previous.exists():
        rep = json.loads(previous.read_text())
        if rep.get("fingerprint") == ident and "error" not in rep.get("statuses", {}) and rep.get("exported", False) == cfg.annotation.export:
            log.info("annotations complete, nothing to do: %s", previous)
            dataset = crun.path / f"dataset-K{k}" if cfg.annotation.export else None
            return AnnotateResult(crun.path, crun.layers, k, rep["statuses"], rep["usage"], rep["cost_usd"], dataset,
                                  time.perf_counter() - t0)
    cache = None if cfg.annotator.backend == "alignment" else ReplyCache(cfg.annotation.cache)
    try:
        annotator = make_annotator(cfg, cache)
        by_layer = {layer: crun.read(layer) for layer in crun.layers}
        targets = {layer: _select(cs, cfg.annotation.max_concepts) for layer, cs in by_layer.items()}
        if cfg.annotation.dry_run:
            if not isinstance(annotator, LLMAnnotator):
                raise UserError("annotation.dry_run=true needs an LLM annotator (annotator=openai or hf_local)")
            return _dry_run(annotator, crun, targets, cfg, out)
        sentences = crun.sentences()
        flat = [c for layer in crun.layers for c in targets[layer]]
        if isinstance(annotator, LLMAnnotator):  # requests and cost, before any is sent
            lines, n_distinct, tokens, cost_max = _estimate(annotator, targets, cfg, sentences)
            what = (f"an LLM annotation: {len(lines)} concepts, {n_distinct} distinct prompts (cached replies are not "
                    f"sent again), about {tokens:,} prompt tokens, at most ${cost_max:.4f}")
            log.info("%s with %s at %s", what, a.model, a.base_url or "the OpenAI API")
            confirm_large(what, cost_max, cfg.annotation.confirm_above_usd, "annotation.confirm_above_usd")
        log.info("annotating %d concepts of layers %s with %s (%s, prompt %s)", len(flat),
                 ",".join(map(str, crun.layers)), annotator.name, annotator.model, annotator.prompt_id)
        anns = annotator.annotate(flat, sentences)
        client = annotator.client if isinstance(annotator, LLMAnnotator) else None
        if client is not None and flat and client.usage.answered + client.usage.cached == 0:
            raise UserError(f"no request was answered ({client.broken or _first_error(anns)}); no record was changed "
                            "and nothing was exported. Check the server and re-run")
        changed = sum(merge(c, ann) for c, ann in zip(flat, anns))
        for layer in crun.layers:
            crun.write(layer, by_layer[layer])
        statuses = dict(Counter(a.status for a in anns))
        usage = client.usage.to_dict() if client is not None else {}
        cost = client.usage.cost(a.price_input_per_1m, a.price_output_per_1m) if usage else 0.0
        if client is not None and client.broken:
            raise UserError(f"{client.broken}. The {client.usage.answered + client.usage.cached} replies received so "
                            f"far are kept ({changed} records updated, replies cached in {cfg.annotation.cache}); "
                            "nothing was exported. Re-run when the server is back: answered prompts are not sent again")
    finally:
        if cache is not None:
            cache.close()
    cached_cost = client.usage.cached_cost(a.price_input_per_1m, a.price_output_per_1m) if usage else 0.0
    report = {
        "fingerprint": ident, "exported": cfg.annotation.export,
        "annotator": annotator.name, "model": annotator.model, "prompt_id": annotator.prompt_id, "k": k,
        "layers": crun.layers, "concepts": len(anns), "statuses": statuses, "usage": usage, "cost_usd": cost,
        "cost_cached_usd": cached_cost, "cost_total_usd": cost + cached_cost, "records_changed": changed,
        "label_source": cfg.annotation.label_source, "versions": library_versions(),
    }
    log.info("labels: %s", ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
    if usage:
        log.info("requests sent %d (retries %d, failed %d), answered from cache %d; tokens %d in / %d out; "
                 "estimated cost $%.4f for this run, $%.4f for the cached replies it reused ($%.4f in all)",
                 usage["requests"], usage["retries"], usage["failed"], usage["cached"], usage["prompt_tokens"],
                 usage["completion_tokens"], cost, cached_cost, cost + cached_cost)
    dataset = None
    if cfg.annotation.export:
        source = cfg.annotation.label_source
        dataset = export_dataset(crun.path / f"dataset-K{k}", by_layer, sentences, k, hf=cfg.annotation.export_hf,
                                 source=source)
        write_sheet(dataset / "human-eval.csv", by_layer, cfg.annotation.human_eval_per_layer, cfg.annotation.seed,
                    label_of=lambda c: (a.label if (a := label_of_record(c, source)) else None),
                    human_of=lambda c: next((x.label for x in c.annotations if x.annotator == "alignment" and x.label), None))
        log.info("concept dataset: %s", dataset)
    if cfg.discovery.explorer:
        from concepts.explorer import write_explorer

        page = crun.path / f"explorer-K{k}.html"
        write_explorer(page, by_layer, sentences, f"{cfg.model.name or cfg.model.name_or_path} · {cfg.corpus.name} · K={k}",
                       label_source=cfg.annotation.label_source)
        log.info("open the concept explorer: %s", page.resolve().as_uri())
    atomic_write_json(out / name, report)  # last: its presence means this annotation run is complete
    return AnnotateResult(crun.path, crun.layers, k, statuses, usage, cost, dataset, time.perf_counter() - t0)


main = hydra_entry("annotate", run)

if __name__ == "__main__":
    main()
