"""Plots of the discovery stage (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from concepts.core.artifacts import unique_tmp


def plot_alignment(table: pd.DataFrame, path: Path, title: str) -> None:
    """Mean alignment (concepts aligned and tags covered, averaged) per layer, one line per tag set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for name, grp in table.groupby("tag_set"):
        grp = grp.sort_values("layer")
        axes[0].plot(grp["layer"], grp["concept_share"], marker="o", label=name)
        axes[1].plot(grp["layer"], grp["tag_share"], marker="o", label=name)
    axes[0].set_title("concepts aligned with a tag")
    axes[1].set_title("tags covered by a concept")
    layers = sorted({int(x) for x in table["layer"]}) if len(table) else []
    for ax in axes:
        ax.set_xlabel("layer")
        if 0 < len(layers) <= 16:  # ticks at the layers drawn: never 3.5
            ax.set_xticks(layers)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)  # parallel jobs may write the same plot
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
