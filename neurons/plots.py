"""Plots of neuron rankings (PNG): salience heatmap, layer distribution, accuracy vs k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from concepts.core.artifacts import unique_tmp
from neurons.ranking import Ranking


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def salience_heatmap(r: Ranking, path: Path, top: int = 30, max_classes: int = 40, unit: str = "") -> None:
    """Classes x the `top` overall neurons, each class's scores scaled to its maximum."""
    plt = _plt()
    cols = r.order()[:top]
    counts = r.meta.get("class_counts")
    rows = np.argsort(-np.asarray(counts))[:max_classes] if counts else np.arange(min(len(r.classes), max_classes))
    S = r.scores[np.ix_(rows, cols)]
    S = S / np.maximum(np.abs(r.scores[rows]).max(1, keepdims=True), 1e-12)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(cols) + 2), max(3, 0.25 * len(rows) + 1.5)))
    im = ax.imshow(S, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cols)), [r.neurons[c] for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), [r.classes[i][:40] for i in rows], fontsize=7)
    ax.set_title(f"{unit + ', ' if unit else ''}{r.method}: salience of the top {len(cols)} neurons (scaled per class)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    _save(fig, path)


def layer_distribution(r: Ranking, path: Path, ks: tuple[int, ...] = (10, 50, 100)) -> None:
    """How the overall top-k neurons of an all-layer ranking spread over layers."""
    plt = _plt()
    layers = np.array([int(n.split(":")[0][1:]) for n in r.neurons])
    uniq = np.unique(layers)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(ks)
    for i, k in enumerate(k for k in ks if k <= r.dim):
        top = layers[r.order()[:k]]
        ax.bar(uniq + i * width, [np.mean(top == u) for u in uniq], width, label=f"top {k}")
    ax.set(xlabel="layer", ylabel="share of top neurons", title=f"{r.method}: layers of the top neurons")
    ax.legend()
    _save(fig, path)


def layer_ticks(ax, layers) -> None:
    """Ticks at the layers drawn (whole numbers, never 3.5), or whole-number ticks when there are many."""
    layers = sorted({int(x) for x in layers if x == x})
    if 0 < len(layers) <= 16:
        ax.set_xticks(layers)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def k_ticks(ax, ks) -> None:
    """A log axis of k with ticks at the k values drawn, written as plain numbers (10, 50, 100)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ks = sorted({int(k) for k in ks})
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ks:
        ax.set_xticks(ks, [str(k) for k in ks])


def outside_legend(ax, fontsize: int = 7) -> None:
    """The legend to the right of the panel, off the lines."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)


def _curves(ax, frame: pd.DataFrame, which_col: str, value: str) -> None:
    """One line per (method, which neurons) of `value` against k, a colour per method."""
    styles = {"top": "o-", "random": "s--", "bottom": "v:"}
    for i, (method, g) in enumerate(frame.groupby("method")):
        for which, gg in g.groupby(which_col):
            gg = gg.groupby("k")[value].mean()
            ax.plot(gg.index, gg.values, styles.get(which, "o-"), color=f"C{i}", label=f"{method} {which}")
    outside_legend(ax)


def accuracy_vs_k(curves: pd.DataFrame, path: Path, title: str) -> None:
    """Retrained-probe accuracy vs k (top / random / bottom neurons), one colour per method;
    ablation drops in a second panel when present."""
    plt = _plt()
    retrain = curves[curves["kind"] == "retrain"]
    abl = curves[curves["kind"] == "ablation"]
    fig, axes = plt.subplots(1, 2 if len(abl) else 1, figsize=(13 if len(abl) else 7, 4), squeeze=False)
    _curves(axes[0, 0], retrain, "neurons", "accuracy")
    axes[0, 0].set(xlabel="k neurons", ylabel="test accuracy", title="probe retrained on k neurons")
    k_ticks(axes[0, 0], retrain["k"])
    if len(abl):
        _curves(axes[0, 1], abl, "ablated", "drop")
        axes[0, 1].set(xlabel="k neurons ablated", ylabel="accuracy drop", title="ablation in the trained probe")
        k_ticks(axes[0, 1], abl["k"])
    fig.suptitle(title)
    _save(fig, path)


def small_multiples(path: Path, panels: dict, xlabel: str, ylabel: str) -> None:
    """One panel per key; each panel a list of (label, x, y) lines. A label keeps its colour in
    every panel (a panel may lack some lines), and every panel has a legend."""
    fig, axes = _grid(len(panels))
    colours: dict = {}
    for lines in panels.values():
        for label, _, _ in lines:
            colours.setdefault(label, f"C{len(colours) % 10}")
    for ax, (title, lines) in zip(axes, panels.items()):
        for label, x, y in lines:
            ax.plot(x, y, "o-", color=colours[label], label=label, markersize=3)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save(fig, path)


def _grid(n: int):
    """A figure of `n` panels (at least one), three a row; the panels' axes, spare ones hidden."""
    n = max(n, 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = _plt().subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def unit_layer(units: pd.Series) -> pd.Series:
    """`layer_NN` -> NN (other units, e.g. concatenated layers, -> NaN)."""
    return pd.to_numeric(units.str.extract(r"^layer_(\d+)$")[0], errors="coerce")


def curves_by_layer(curves: pd.DataFrame, path: Path, title: str) -> bool:
    """Across layers: accuracy of probes retrained on the top-k (solid) and random-k (dashed)
    neurons, one colour per k; and the drop when the top-k are ablated. False when there is no
    per-layer unit to draw."""
    c = curves.assign(layer=unit_layer(curves["unit"].astype(str))).dropna(subset=["layer"])
    if c.empty or c["layer"].nunique() < 2:
        return False
    plt = _plt()
    abl = c[c["kind"] == "ablation"]
    fig, axes = plt.subplots(1, 2 if len(abl) else 1, figsize=(13 if len(abl) else 7, 4), squeeze=False)
    ret = c[c["kind"] == "retrain"]
    for i, (k, g) in enumerate(ret.groupby("k", sort=False)):
        for which, style in (("top", "o-"), ("random", "s--")):
            gg = g[g["neurons"] == which].groupby("layer")["accuracy"].mean()
            if len(gg):
                axes[0, 0].plot(gg.index, gg.values, style, color=f"C{i % 10}", label=f"{which} {k}", markersize=3)
    axes[0, 0].set(xlabel="layer", ylabel="test accuracy", title="probe retrained on k neurons")
    if len(abl):  # the top-k ablated (solid) against the random-k baseline (dashed), one colour per k
        for i, (k, g) in enumerate(abl.groupby("k", sort=False)):
            for which, style in (("top", "o-"), ("random", "s--")):
                gg = g[g["ablated"] == which].groupby("layer")["drop"].mean()
                if len(gg):
                    axes[0, 1].plot(gg.index, gg.values, style, color=f"C{i % 10}", label=f"{which} {k} ablated",
                                    markersize=3)
        axes[0, 1].set(xlabel="layer", ylabel="accuracy drop", title="ablation in the trained probe")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        outside_legend(ax)
        layer_ticks(ax, c["layer"])
    fig.suptitle(title)
    _save(fig, path)
    return True


def accuracy_vs_k_grid(curves: pd.DataFrame, path: Path) -> bool:
    """Retrained-probe accuracy against k, one panel per unit (small multiples of
    `accuracy_vs_k`'s left panel). False when there is nothing to draw."""
    retrain = curves[curves["kind"] == "retrain"] if len(curves) else curves
    if not len(retrain):
        return False
    units = sorted(retrain["unit"].unique())
    fig, axes = _grid(len(units))
    for ax, unit in zip(axes, units):
        _curves(ax, retrain[retrain["unit"] == unit], "neurons", "accuracy")
        ax.set(xlabel="k neurons", ylabel="test accuracy", title=unit)
        k_ticks(ax, retrain["k"])
        ax.grid(alpha=0.3)
    _save(fig, path)
    return True
