"""`python -m neurons.pipeline`: the whole pipeline, model to report, in one command.

    python -m neurons.pipeline                          # the demo preset's defaults: MiniLM on EWT
    python -m neurons.pipeline experiment=tcn_paper -m  # the paper's run (needs the Hub and an API key)
    python -m neurons.pipeline annotator=openai annotator.base_url=http://localhost:8000/v1

Stages: extract -> discover (all layers, K) -> annotate -> [score labels] -> probe the gold tag
set and the largest labelled concepts of each layer, each with its control task -> rank
neurons -> report. Every stage reuses its complete outputs, so a re-run with nothing changed
takes seconds, and changing only the probe re-runs probing and the neuron evaluation (its
retrained and ablated probes are the run's probe), not the ranking (unless ranking=probe_weights,
which ranks that probe's weights). It lives in `neurons`, the one package that may import every
stage.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
import concepts.annotation.stage as annotate_stage
import concepts.discovery.stage as discover_stage
import concepts.extraction.stage as extract_stage
import neurons.rank as rank_stage
import probing.train as train_stage
from concepts.annotation.dataset import label_source_of
from concepts.core.artifacts import atomic_write_json, atomic_write_text, fingerprint, read_manifest
from concepts.core.cli import human_seconds, hydra_entry, model_slug
from concepts.core.config import pick_layers, validate
from concepts.core.errors import UserError
from concepts.discovery.explorer import write_explorer
from concepts.discovery.records import read_concepts
from concepts.extraction.models import config_layers
from concepts.extraction.store import ActivationStore
from neurons import report as rep
from neurons.config import PipelineConfig, register_neuron_configs, register_pipeline_configs
from probing.config import register_probing_configs
from probing.summary import plot_summary, summarize_results

log = logging.getLogger(__name__)
register_probing_configs()
register_neuron_configs()
register_pipeline_configs()


@dataclass
class PipelineResult:
    report: Path  # the report folder
    index: Path  # its index.html
    stages: dict[str, float]  # stage -> seconds
    probing: pd.DataFrame  # one row per probe
    alignment: pd.DataFrame
    probe_results: list  # probing.results.ProbeResult of this run
    ranked: object | None  # neurons.rank.RankResult
    seconds: float


def preflight(cfg: PipelineConfig) -> None:
    """Say up front what a run needs that is missing (the Hub, an API key), before any work."""
    problems = []
    name = cfg.model.name_or_path
    if not name.startswith("embedded:") and not Path(name).expanduser().exists():
        if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
            problems.append(f"model {name!r} must come from the Hugging Face Hub, but HF_HUB_OFFLINE=1 "
                            "(download it first, or pass a local folder with model=<path>)")
    a = cfg.annotator
    if a.backend == "openai" and not os.environ.get(a.api_key_env) and not (a.base_url or os.environ.get("OPENAI_BASE_URL")):
        problems.append(f"annotator=openai needs an API key in ${a.api_key_env} (or annotator.base_url for a local "
                        "OpenAI-compatible server; annotator=alignment works offline)")
    if cfg.pipeline.score_labels and a.backend == "alignment":
        problems.append("pipeline.score_labels=true needs an LLM annotator (annotator=openai or hf_local)")
    if problems and cfg.pipeline.check_network:
        raise UserError("this run cannot start: " + "; ".join(problems))
    # the layers asked for, against the model's depth from its config (no weights), before any work
    held = config_layers(cfg.model, cfg.extraction.layers) if cfg.layer is not None else None
    if held is not None:
        pick_layers("layer={}", cfg.layer, held)


def _with(cfg: PipelineConfig, **changes) -> PipelineConfig:
    """A copy of the config with some sections changed (`labels={...}`)."""
    out = copy.deepcopy(cfg)
    for section, values in changes.items():
        target = getattr(out, section)
        for k, v in values.items():
            setattr(target, k, v)
    return out


def run(cfg: DictConfig | PipelineConfig) -> PipelineResult:
    t0 = time.perf_counter()
    cfg = validate(cfg, PipelineConfig)
    preflight(cfg)
    p = cfg.pipeline
    stages: dict[str, float] = {}

    def timed(name, fn, *args):
        t = time.perf_counter()
        log.info("== %s", name)
        out = fn(*args)
        stages[name] = time.perf_counter() - t
        log.info("== %s: done in %s", name, human_seconds(stages[name]))
        return out

    model = cfg.model.name or model_slug(cfg.model.name_or_path)
    # one W&B group for the pipeline's runs (a sweep's own group when run as a multirun)
    group = train_stage.sweep_group(cfg, f"pipeline-{model}-{cfg.corpus.name}")
    logger = {"kind": "wandb" if p.wandb else cfg.logger.kind, "group": group}
    sample = cfg.sampling if p.store == "sampled" else None
    # K is checked before extracting
    ex = timed("extract", lambda c: extract_stage.run(c, check_k=True, sample=sample), cfg)
    cfg = _with(cfg, discovery={"store": str(ex.store)})  # later stages open this store directly
    disc = timed("discover", discover_stage.run, cfg)
    ann = timed("annotate", annotate_stage.run, cfg)
    if p.score_labels:
        import concepts.annotation.score_stage as score_stage

        timed("score labels", score_stage.run, cfg)
    tag_cfg = _with(cfg, labels={"source": "tag", "tag": p.tag}, logger=logger)
    tag_probe = timed(f"probe {p.tag}", train_stage.run, tag_cfg)
    probe_results = list(tag_probe.results)
    # the report plots this run's probes (the probing folder's own summary.png covers every layer
    # any run probed with these settings)
    probe_plots = [(tag_probe.results, f"{model}: {tag_probe.path.name.rsplit('-', 1)[0]}")]
    if p.concept_probes:
        c_cfg = _with(cfg, labels={"source": "concepts", "top": p.concept_top, "require_label": True,
                                   "concepts": str(disc.path)}, logger=logger)
        c_probe = timed("probe concepts", train_stage.run, c_cfg)
        probe_results += c_probe.results
        probe_plots.append((c_probe.results, f"{model}: {c_probe.path.name.rsplit('-', 1)[0]}"))
    ranked = None
    if p.neurons:
        r_cfg = _with(cfg, labels={"source": "tag", "tag": p.tag}, logger={"kind": "none"})
        ranked = timed("rank neurons", rank_stage.run, r_cfg)
    t = time.perf_counter()
    log.info("== report")
    root = Path(p.report) if p.report else Path(cfg.paths.workspace) / "report" / rep.report_name(cfg, model)
    probing = summarize_results(probe_results)
    inputs = fingerprint({"concepts": str(disc.path), "layers": list(disc.layers), "annotation": ann.statuses,
                          "probes": sorted(probing["fingerprint"]),
                          "ranked": str(ranked.path) if ranked is not None else None, "wandb": p.wandb})
    from probing.loggers import already_logged, mark_logged, wandb_root

    if p.wandb and not already_logged(cfg.logger, wandb_root(cfg), {"pipeline": inputs}):
        # once per set of results: a re-run with nothing changed logs nothing new
        from neurons.wandb_summary import log_pipeline

        log_pipeline(cfg, group, model, disc, ann, probing, ranked,
                     {"store": read_manifest(Path(ex.store))["fingerprint"], "concepts": read_manifest(disc.path)["fingerprint"],
                      "probes": sorted(set(probing["fingerprint"])) if len(probing) else [],
                      "ranking": ranked.path.name.rsplit("-", 1)[-1] if ranked is not None else None})
        mark_logged(cfg.logger, wandb_root(cfg), {"pipeline": inputs})
    marker = root / "report.json"
    if (root / "index.html").exists() and marker.exists() and json.loads(marker.read_text()).get("inputs") == inputs:
        index = root / "index.html"  # nothing upstream changed
    else:
        index = write_report(cfg, root, model, ex, disc, ann, probing, probe_plots, ranked, group)
        atomic_write_json(marker, {"inputs": inputs, "stages": stages, "model": model, "corpus": cfg.corpus.name,
                                   "layers_in_model": int(read_manifest(Path(ex.store))["n_layers"])})
    stages["report"] = time.perf_counter() - t
    log.info("== report: done in %s", human_seconds(stages["report"]))
    total = time.perf_counter() - t0
    log.info("stages: %s", ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()))
    log.info("report (%.0f s in all): %s", total, index.resolve().as_uri())
    return PipelineResult(root, index, stages, probing, disc.alignment, probe_results, ranked, total)


def write_report(cfg, root: Path, model: str, ex, disc, ann, probing: pd.DataFrame, probe_plots, ranked,
                 group: str) -> Path:
    """The report folder of one pipeline run: its files (explorer, tables, dataset, plots) and the
    index page that links them; returns the page."""
    root.mkdir(parents=True, exist_ok=True)
    _write_report_files(cfg, root, model, disc, ann, probing, probe_plots, ranked)
    probe_view, probe_notes = rep.probe_table(probing)
    sections = [
        ("Contents", "<p class='links'>" + " ".join([
            rep.link("explorer.html", "concept explorer"), rep.link("alignment.csv", "alignment table"),
            rep.link("probing.csv", "probing table"), rep.link("neurons-curves.csv", "neuron curves"),
            rep.link("dataset/", "concept dataset")]) + "</p>"),
        ("Concepts and their alignment with human-defined tags", _alignment_section(cfg, disc)),
        ("Annotation", "<p>Labels: " + ", ".join(f"{s} {n}" for s, n in sorted(ann.statuses.items()))
         + f" ({cfg.annotator.backend}; {cfg.annotator.model if cfg.annotator.backend != 'alignment' else 'aligned tags'}).</p>"),
        ("Probing (accuracy, control task, selectivity)", rep.table(probe_view, 60) + probe_notes
         + "".join(rep.img(f"probing-{i}.png", "probing") for i in range(len(probe_plots)))),
        ("Neurons", _neuron_section(cfg, root, model, disc, ranked)),
    ]
    if cfg.pipeline.wandb:
        from probing.loggers import wandb_root

        runs = wandb_root(cfg) / "wandb"
        sections.append(("Weights & Biases", f"<p>Every run of this workspace (probes, rankings, this pipeline's "
                                              f"tables) is in <code>{runs}</code>, group <code>{html.escape(group)}</code>. "
                                              f"Upload them all with <code>wandb sync {runs}/offline-run-*</code>.</p>"))
    return rep.write_index(root, f"Latent concepts of {model}", _run_facts(cfg, ex, disc.k), sections)


def _write_report_files(cfg, root: Path, model: str, disc, ann, probing: pd.DataFrame, probe_plots, ranked) -> None:
    """The explorer, alignment table and plot, dataset, probing plots and table of this run's
    layers only, never the shared folder's views (which cover every layer any run clustered there)."""
    k = disc.k
    neurons_words = {}
    if ranked is not None:
        for unit in sorted(ranked.rankings):
            f = ranked.path / unit / "top_words.json"
            if f.exists():
                neurons_words.update(json.loads(f.read_text()))
    by_layer = {layer: read_concepts(disc.path / f"layer_{layer:02d}" / f"concepts-K{k}.jsonl") for layer in disc.layers}
    sentences = ActivationStore(disc.store).sentence_words()
    source = label_source_of(cfg)
    write_explorer(root / "explorer.html", by_layer, sentences, f"{model} · {cfg.corpus.name} · K={k}",
                   neurons_words or None, label_source=source)
    atomic_write_text(root / "alignment.csv", disc.alignment.to_csv(index=False))
    if cfg.discovery.plot and len(disc.alignment):
        from concepts.discovery.plots import plot_alignment

        plot_alignment(disc.alignment, root / "alignment.png", f"{model}: alignment at θ={cfg.discovery.theta}, K={k}")
    if ann.dataset is not None:
        annotate_stage.write_dataset(root / "dataset", by_layer, sentences, k, cfg, source)
    for i, (results, title) in enumerate(probe_plots):
        if cfg.probing.plot and results:
            plot_summary(summarize_results(results), root / f"probing-{i}.png", title)
    probing.to_csv(root / "probing.csv", index=False)


def _alignment_section(cfg, disc) -> str:
    align = disc.alignment
    align_view = (align.pivot_table(index="layer", columns="tag_set", values="concept_share").reset_index()
                  if len(align) else align)
    align_view.columns.name = None
    gone = [t for t in cfg.discovery.tag_sets if len(align) and t not in set(align["tag_set"])]
    gone_note = (f"<p><em>Tag sets not computed here: {', '.join(gone)} (the corpus has no such column, or a "
                 "resource is missing, e.g. Debian's wordnet-base for wordnet; the discovery log says which).</em></p>"
                 if gone else "")
    return (f"<p>{len(disc.layers)} layers x K={disc.k} concepts. Share of concepts aligned (θ={cfg.discovery.theta}) "
            "per tag set:</p>" + rep.table(align_view) + gone_note + rep.img("alignment.png", "alignment across layers"))


def _neuron_section(cfg, root: Path, model: str, disc, ranked) -> str:
    """The neurons part of the page (and its CSVs and per-layer plots copied into the folder)."""
    if ranked is None:
        return "<p><em>neuron ranking was not run</em></p>"
    ranked.curves.to_csv(root / "neurons-curves.csv", index=False)
    if len(ranked.super_sub):
        ranked.super_sub.to_csv(root / "neurons-super-sub.csv", index=False)
    copied = []
    for unit in sorted(ranked.rankings):  # every per-layer plot is in the folder, linked; the page shows
        for png in ("accuracy_vs_k.png", "salience.png", "layers.png"):  # small multiples instead
            if rep.copy_into(ranked.path / unit / png, root / "neurons" / f"{unit}-{png}"):
                copied.append(f"neurons/{unit}-{png}")
        rep.copy_into(ranked.path / unit / "top_words.json", root / "neurons" / f"{unit}-top_words.json")
    parts = neuron_figures(ranked, root, model)
    if copied:
        parts.append("<p class='links'>Per layer: " + " ".join(rep.link(c, c.split("/")[1]) for c in copied) + "</p>")
    top = ranked.curves[(ranked.curves["kind"] == "retrain")] if len(ranked.curves) else ranked.curves
    pivot = (top.pivot_table(index=["unit", "k"], columns="neurons", values="accuracy").reset_index()
             if len(top) else pd.DataFrame())
    pivot.columns.name = None  # no empty header column over the index
    first = ranked.rankings[next(iter(ranked.rankings))] if ranked.rankings else None
    inputs = ("standardised activations" if first is not None and first.meta.get("standardized")
              else "raw activations")
    missing = (f"<p><em>Super/sub analysis skipped for layer(s) {', '.join(map(str, ranked.super_sub_missing))}: "
               "no concepts there.</em></p>" if ranked.super_sub_missing else "")
    return (f"<p>Method: {first.method if first is not None else '-'}, on {inputs}. "
            "Probes retrained on the top / random / bottom k neurons (test accuracy):</p>"
            + rep.table(pivot, 60) + rep.scale_section(ranked.scale)
            + "<h3>Super and sub concepts (top-10 neuron overlap)</h3>"
            + rep.super_sub_table(ranked.super_sub, disc.path, disc.k, label_source_of(cfg))
            + ("<p class='links'>" + rep.link("neurons-super-sub.csv", "every pair (CSV)") + "</p>"
               if len(ranked.super_sub) else "")
            + missing + "".join(parts))


def _run_facts(cfg, ex, k: int) -> dict:
    """The page's header: model, corpus, sentences, words, what the probes saw, K, preset, date."""
    manifest = read_manifest(Path(ex.store)) or {}
    counts = manifest.get("counts", {})
    if "sample" in manifest:  # a sampled store: the probes and rankings saw the sampled tokens only
        stored = {"words": manifest.get("sample_stats", {}).get("tokens_in", "-"),
                  "probed tokens": f"{counts.get('words', '-')} sampled (min_count={manifest['sample']['min_count']}, "
                                   f"max_per_type={manifest['sample']['max_per_type']})"}
    else:
        stored = {"words": counts.get("words", "-"), "probed tokens": "every word"}
    return {"model": cfg.model.name_or_path, "corpus": f"{cfg.corpus.name} ({', '.join(cfg.corpus.splits)})",
            "sentences": counts.get("sentences", "-"), **stored, "K": k,
            "preset": cfg.preset or "-", "written": time.strftime("%Y-%m-%d %H:%M")}


def neuron_figures(ranked, root: Path, model: str) -> list[str]:
    """The report's neuron plots: the curves across layers, accuracy against k as small multiples
    (one panel per layer), and the salience heatmap of the last unit."""
    from neurons.plots import accuracy_vs_k_grid, curves_by_layer

    out = []
    curves = ranked.curves
    if len(curves) and curves_by_layer(curves, root / "neurons-by-layer.png", f"{model}: neurons across layers"):
        out.append(rep.img("neurons-by-layer.png", "top-k neurons across layers"))
    if accuracy_vs_k_grid(curves, root / "neurons-vs-k.png"):
        out.append(rep.img("neurons-vs-k.png", "probe accuracy on k neurons, per layer"))
    last = sorted(ranked.rankings)[-1] if ranked.rankings else None
    if last and (root / "neurons" / f"{last}-salience.png").exists():
        out.append(rep.img(f"neurons/{last}-salience.png", f"{last} salience"))
    return out


def _save_for_sweep(job_dir: Path, result: PipelineResult) -> None:
    """Leave the probe and ranking results where the sweep summaries look for them."""
    train_stage.save_results(job_dir, result.probe_results)
    (Path(job_dir) / "report-path.txt").write_text(str(Path(result.report).resolve()) + "\n")  # for the comparison page
    if result.ranked is not None:
        rank_stage.save_results(job_dir, result.ranked)


main = hydra_entry("pipeline", run, on_result=_save_for_sweep)

if __name__ == "__main__":
    main()
