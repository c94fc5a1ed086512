"""Sweep summaries: probe results collected into one table (CSV, Parquet) and a plot of
accuracy, control accuracy and selectivity across layers, one line per model and task
(concept probes averaged per layer); optionally logged to W&B as a table and an image.

Intervals: a single probe per point shows its 95% interval (by default a bootstrap over test
sentences, `probing.stats.sentence_bootstrap`; the result's `interval` says which); a point
that averages several probes (concept probes of a layer) shows mean +- 1.96 standard errors
over those probes. The lexical baseline (word -> label lookup) is drawn dotted. A point with
a caveat (`flags`: below its majority or lexical baseline, few test positives, not selective)
is drawn hollow and the flags are listed under the plot. Skipped tasks (`skipped`: the reason)
stay in the table and are left out of the plot.

    python -m probing.summary <folder> [<folder> ...] [--out DIR] [--wandb]

A folder is a probing output folder or a Hydra sweep folder; a multirun of probing.train
writes this summary into its sweep folder by itself (the `SweepSummary` callback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback

from concepts.core.artifacts import atomic_write_text, unique_tmp
from probing.loggers import wandb_root
from probing.results import ProbeResult

log = logging.getLogger(__name__)

COLUMNS = ["model", "layer", "source", "task", "classes", "n_train", "n_dev", "n_test", "accuracy", "accuracy_low",
           "accuracy_high", "balanced_accuracy", "balanced_low", "balanced_high", "positive_f1", "lexical_accuracy",
           "majority_accuracy", "macro_f1", "dev_accuracy", "control_accuracy", "control_low", "control_high",
           "selectivity", "selectivity_low", "selectivity_high", "flags", "skipped", "resplits", "resplit_accuracy_sd",
           "resplit_selectivity_sd", "resplit_accuracy_min", "resplit_accuracy_max", "C", "l2", "seconds", "steps",
           "converged", "interval", "fingerprint"]


def scored(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of probes that ran (not skipped)."""
    return df[df["skipped"].isna()] if "skipped" in df else df


def summarize_results(results: list[ProbeResult]) -> pd.DataFrame:
    df = pd.DataFrame([r.row() for r in results], columns=COLUMNS)
    return df.sort_values(["model", "source", "task", "layer"], kind="stable").reset_index(drop=True)


def line_key(row) -> str:
    """The plotted line of a result: tag probes by tag, concept probes by source."""
    return f"{row['model']} · {row['task'] if row['source'] == 'tag' else row['source']}"


def layer_means(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (line, layer): the mean of accuracy, control, selectivity and the lexical
    baseline, with 95% bounds (the probe's own interval when one probe, else +-1.96 SE)."""
    rows = []
    for (line, layer), g in df.groupby(["line", "layer"]):
        row = {"line": line, "layer": layer, "probes": len(g)}
        for col, lo, hi in (("accuracy", "accuracy_low", "accuracy_high"), ("selectivity", "selectivity_low", "selectivity_high"),
                            ("control_accuracy", "control_low", "control_high"), ("lexical_accuracy", None, None)):
            v = pd.to_numeric(g[col], errors="coerce").dropna() if col in g else pd.Series(dtype=float)
            row[col] = float(v.mean()) if len(v) else float("nan")
            if lo is None:
                continue
            if len(g) == 1 and lo in g and pd.notna(g[lo].iloc[0]):
                row[f"{col}_lo"], row[f"{col}_hi"] = float(g[lo].iloc[0]), float(g[hi].iloc[0])
            elif len(v) > 1:
                half = 1.96 * float(v.std(ddof=1)) / len(v) ** 0.5
                row[f"{col}_lo"], row[f"{col}_hi"] = row[col] - half, row[col] + half
            else:
                row[f"{col}_lo"] = row[f"{col}_hi"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def plot_summary(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = scored(df)
    df = df.assign(line=df.apply(line_key, axis=1))
    agg = layer_means(df)
    flagged = df.groupby(["line", "layer"])["flags"].apply(lambda f: sorted({x for v in f.fillna("") for x in str(v).split(";") if x}))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    # concept probes classify other concepts in every layer: points with intervals, no line across layers
    per_layer = set(df.loc[df["source"] != "tag", "line"])
    for i, (name, g) in enumerate(agg.groupby("line")):
        color = f"C{i % 10}"
        if name in per_layer or g["layer"].nunique() == 1:  # (one layer: a point with its interval, not a line)
            first = f"{name} (classes differ by layer)" if name in per_layer else name
            for ax, col, lab in ((a1, "accuracy", first), (a2, "selectivity", name)):
                if g[col].notna().any():
                    # an interval need not hold the mean (a bootstrap interval, or rounding at 1.0): draw it clipped
                    yerr = [(g[col] - g[f"{col}_lo"]).clip(lower=0), (g[f"{col}_hi"] - g[col]).clip(lower=0)]
                    ax.errorbar(g["layer"], g[col], yerr=yerr, fmt="none", ecolor=color, capsize=3)
                    hollow = g["layer"].map(lambda layer, n=name: bool(flagged.get((n, layer), [])))
                    if (~hollow).any():
                        ax.plot(g.loc[~hollow, "layer"], g.loc[~hollow, col], "o", color=color, label=lab)
                    if hollow.any():  # (one legend entry a line: the hollow points' when all are flagged)
                        ax.plot(g.loc[hollow, "layer"], g.loc[hollow, col], "o", color=color, markerfacecolor="white",
                                label=None if (~hollow).any() else lab)
            if g["control_accuracy"].notna().any():
                a1.plot(g["layer"], g["control_accuracy"], "x", color=color, alpha=0.6, label=f"{name} (control)")
            if g["lexical_accuracy"].notna().any():
                a1.plot(g["layer"], g["lexical_accuracy"], "_", color=color, markersize=10, label=f"{name} (word-type lookup)")
            continue
        a1.plot(g["layer"], g["accuracy"], "-", color=color, label=name)
        hollow = g["layer"].map(lambda layer, n=name: bool(flagged.get((n, layer), [])))
        a1.plot(g.loc[~hollow, "layer"], g.loc[~hollow, "accuracy"], "o", color=color)
        a1.plot(g.loc[hollow, "layer"], g.loc[hollow, "accuracy"], "o", color=color, markerfacecolor="white")
        a1.fill_between(g["layer"], g["accuracy_lo"], g["accuracy_hi"], color=color, alpha=0.15, linewidth=0)
        if g["lexical_accuracy"].notna().any():
            a1.plot(g["layer"], g["lexical_accuracy"], ":", color=color, alpha=0.8, label=f"{name} (word-type lookup)")
        if g["control_accuracy"].notna().any():
            a1.plot(g["layer"], g["control_accuracy"], "x--", color=color, alpha=0.6, label=f"{name} (control)")
            a2.plot(g["layer"], g["selectivity"], "o-", color=color, label=name)
            a2.fill_between(g["layer"], g["selectivity_lo"], g["selectivity_hi"], color=color, alpha=0.15, linewidth=0)
    a1.set(xlabel="layer", ylabel="test accuracy",
           title="accuracy, 95% interval (dashed: control; dotted: lexical)")
    a2.set(xlabel="layer", ylabel="accuracy - control accuracy", title="selectivity, 95% interval")
    drawn = sorted({int(x) for x in agg["layer"] if x == x})
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if 0 < len(drawn) <= 16:  # ticks at the layers drawn: never 3.5
            a.set_xticks(drawn)
        else:
            a.xaxis.get_major_locator().set_params(integer=True)
    a1.legend(fontsize=7)
    fig.suptitle(title)
    seen = sorted({f for fl in flagged for f in fl})
    if seen:
        fig.text(0.01, 0.01, "hollow: a probe with caveats (" + ", ".join(seen) + "; see the summary's flags)", fontsize=7)
    fig.tight_layout(rect=(0, 0.04 if seen else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)  # parallel sweep jobs write the same summary
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_summary(folder: Path, results: list[ProbeResult], title: str, plot: bool = True) -> pd.DataFrame:
    """summary.csv, summary.parquet and summary.png in `folder`."""
    folder = Path(folder)
    df = summarize_results(results)
    atomic_write_text(folder / "summary.csv", df.to_csv(index=False))
    tmp = unique_tmp(folder / "summary.parquet")
    df.to_parquet(tmp, index=False)
    tmp.replace(folder / "summary.parquet")
    if plot and len(scored(df)):
        plot_summary(df, folder / "summary.png", title)
    return df


def log_summary_wandb(df: pd.DataFrame, png: Path | None, project: str, group: str, save_dir: Path,
                      mode: str | None = None, entity: str | None = None) -> str:
    """One W&B run (job_type summary) in the sweep's group with the table and the plot;
    returns the run folder."""
    import wandb

    from probing.loggers import wandb_env

    wandb_env(mode)
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, entity=entity, group=group, job_type="summary", name=f"{group}-summary",
                     dir=str(save_dir), reinit="finish_previous")
    payload = {"probe_summary": wandb.Table(dataframe=df.drop(columns=["fingerprint"]))}
    if png is not None and png.exists():
        payload["probe_summary_plot"] = wandb.Image(str(png))
    summary = {"probes": len(df)}
    # a line across layers only for gold-tag probes (the same classes in every layer), one per task
    # and model; concept probes are compared in the table
    gold = scored(df)[lambda d: d["source"] == "tag"]
    for (model, task), part in gold.groupby(["model", "task"]):
        agg = part.groupby("layer")[["accuracy", "selectivity"]].mean().reset_index()
        payload[f"{model}/{task}/accuracy_by_layer"] = wandb.plot.line(
            wandb.Table(dataframe=agg), "layer", "accuracy", title=f"{model}: {task} probe accuracy by layer")
        summary[f"{model}/{task}/best_accuracy"] = float(agg["accuracy"].max())
    run.log(payload)
    run.summary.update(summary)
    folder = run.dir
    run.finish()
    return folder


def collect(folders: list[Path]) -> list[ProbeResult]:
    results = []
    for folder in folders:
        folder = Path(folder)
        for f in sorted(folder.rglob("probe-results.json")):
            results += [ProbeResult(**d) for d in json.loads(f.read_text())]
        for f in sorted(folder.glob("layer_*/*.json")):
            results.append(ProbeResult.load(f))
    return results


class SweepSummary(Callback):
    """Hydra callback: at the end of a probing.train multirun, one summary in the sweep folder."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        results = collect([sweep])
        if not results:
            log.warning("no probe results under %s; nothing to summarise", sweep)
            return
        df = write_summary(sweep, results, title=f"sweep {sweep.name}")
        log.info("sweep summary (%d probes): %s", len(df), sweep / "summary.csv")
        lg = config.get("logger", {})
        if lg.get("kind") == "wandb":
            root = wandb_root(config)  # with the probes' runs
            log_summary_wandb(df, sweep / "summary.png", lg.get("project", "latent-concepts"),
                              lg.get("group") or f"sweep-{sweep.name}", root, lg.get("mode"), lg.get("entity"))
            log.info("W&B runs of this sweep (group %s): %s; upload with: wandb sync %s/wandb/offline-run-*",
                     lg.get("group") or f"sweep-{sweep.name}", root, root)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description="Summarise probe results of one or more folders.")
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="where to write summary.* (default: the first folder)")
    ap.add_argument("--wandb", action="store_true", help="also log the summary to W&B (offline unless WANDB_MODE says otherwise)")
    ap.add_argument("--project", default="latent-concepts")
    args = ap.parse_args(argv)
    missing = [f for f in args.folders if not f.is_dir()]
    if missing:
        log.error("%s is not a folder", missing[0])
        return 2
    results = collect(args.folders)
    if not results:
        log.error("no probe results under %s", ", ".join(map(str, args.folders)))
        return 2
    out = args.out or args.folders[0]
    df = write_summary(out, results, title=", ".join(f.name for f in args.folders))
    log.info("%s", df[["model", "layer", "task", "accuracy", "control_accuracy", "selectivity"]].to_string(index=False))
    if args.wandb:
        log_summary_wandb(df, out / "summary.png", args.project, f"summary-{out.name}", out / "wandb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
