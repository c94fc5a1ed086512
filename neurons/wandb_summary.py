"""The pipeline's W&B run: everything one pipeline reports, as tables and plots that compare like
with like, in the workspace's one W&B folder and the group of its probe runs.

Logged keys: `alignment` (layer x tag set), `alignment/<tag set>` (share of concepts aligned by
layer), `concepts` (layer, id, size, label of record, its source, top words, aligned tags),
`probes/gold` (gold-tag probes: one row per layer) with `probes/gold/accuracy` (accuracy, control
and selectivity by layer), `probes/concepts` (concept probes: their classes differ by layer, so a
table and no line across layers), `neurons/rankings` (top neurons per layer), `neurons/curves`
and `neurons/<unit>/accuracy_vs_k`. The config is the full resolved config plus fingerprints.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from concepts.annotation.dataset import label_of_record, label_source_of
from concepts.discovery.records import read_concepts
from probing.loggers import run_config, start_run, wandb_root

TOP_WORDS = 8


def concepts_table(path: Path, k: int, layers: list[int], label_source: str | None) -> pd.DataFrame:
    """One row per concept: layer, concept_id, size, label, label_source, top_words, aligned."""
    rows = []
    for layer in layers:
        for c in read_concepts(path / f"layer_{layer:02d}" / f"concepts-K{k}.jsonl"):
            ann = label_of_record(c, label_source)
            aligned = {name: a.get("aligned") for name, a in c.alignment.items() if a.get("aligned")}
            rows.append({"layer": layer, "concept_id": c.concept_id, "size": c.size,
                         "label": ann.label if ann else None, "label_source": ann.annotator if ann else None,
                         "top_words": ", ".join(list(c.type_counts)[:TOP_WORDS]),  # most frequent first
                         "aligned": "; ".join(f"{k}={v}" for k, v in sorted(aligned.items()))})
    return pd.DataFrame(rows, columns=["layer", "concept_id", "size", "label", "label_source", "top_words", "aligned"])


def _lines(wandb, df: pd.DataFrame, x: str, cols: list[str], title: str):
    cols = [c for c in cols if c in df and df[c].notna().any()]
    return wandb.plot.line_series(xs=df[x].tolist(), ys=[df[c].fillna(float("nan")).tolist() for c in cols],
                                  keys=cols, title=title, xname=x)


def accuracy_vs_k_plots(wandb, curves: pd.DataFrame, prefix: str = "") -> dict:
    """`<prefix><unit>/accuracy_vs_k`: accuracy of probes retrained on the top, random and bottom k
    neurons against k, one plot per unit."""
    out = {}
    for unit, part in curves[curves["kind"] == "retrain"].groupby("unit"):
        wide = part.pivot_table(index="k", columns="neurons", values="accuracy").reset_index()
        out[f"{prefix}{unit}/accuracy_vs_k"] = _lines(wandb, wide, "k", [c for c in wide.columns if c != "k"],
                                                      f"{unit}: probe accuracy on k neurons")
    return out


def log_pipeline(cfg, group: str, model: str, disc, ann, probing: pd.DataFrame, ranked, fingerprints: dict) -> Path:
    """One run (job_type pipeline) with the tables above; returns its folder."""
    import wandb

    from neurons.ranking import rankings_table
    from neurons.report import report_name

    run = start_run(cfg.logger, wandb_root(cfg), f"{report_name(cfg, model)}-pipeline", group, "pipeline",
                    [model, cfg.corpus.name, f"K{disc.k}", "pipeline", *[f"layer{la}" for la in disc.layers]],
                    run_config(cfg, **fingerprints))
    payload: dict = {}
    align = disc.alignment
    if len(align):
        payload["alignment"] = wandb.Table(dataframe=align)
        for tag_set, part in align.groupby("tag_set"):
            payload[f"alignment/{tag_set}"] = _lines(wandb, part.sort_values("layer"), "layer",
                                                     ["concept_share", "tag_share"], f"alignment with {tag_set} (θ={cfg.discovery.theta})")
    table = concepts_table(disc.path, disc.k, disc.layers, label_source_of(cfg))
    payload["concepts"] = wandb.Table(dataframe=table)
    summary: dict = {"concepts": len(table), "labelled": int(table["label"].notna().sum()),
                     **{f"labels/{s}": n for s, n in sorted(ann.statuses.items())}}
    from probing.summary import scored

    gold = scored(probing)[lambda d: d["source"] == "tag"] if len(probing) else probing
    for task, part in gold.groupby("task") if len(gold) else []:
        part = part.sort_values("layer")
        payload[f"probes/gold/{task}"] = wandb.Table(dataframe=part.drop(columns=["fingerprint"], errors="ignore"))
        payload[f"probes/gold/{task}/accuracy"] = _lines(wandb, part, "layer", ["accuracy", "control_accuracy", "selectivity"],
                                                         f"{task} probe by layer")
        best = part.loc[part["accuracy"].idxmax()]
        summary.update({f"probes/gold/{task}/best_accuracy": float(best["accuracy"]),
                        f"probes/gold/{task}/best_layer": int(best["layer"])})
    other = probing[probing["source"] != "tag"] if len(probing) else probing
    if len(other):  # concept probes: other classes in every layer, compared per row, not as a line
        payload["probes/concepts"] = wandb.Table(dataframe=other.drop(columns=["fingerprint"], errors="ignore"))
    if ranked is not None:
        payload["neurons/rankings"] = wandb.Table(dataframe=rankings_table(ranked.rankings))
        curves = ranked.curves
        if len(curves):
            payload["neurons/curves"] = wandb.Table(dataframe=curves)
            payload.update(accuracy_vs_k_plots(wandb, curves, "neurons/"))
    run.log(payload)
    run.summary.update(summary)
    folder = Path(run.dir).parent
    run.finish()
    return folder
