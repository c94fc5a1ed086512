"""Plots of neuron rankings (PNG): salience heatmap, layer distribution, accuracy vs k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurons.ranking import Ranking


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def salience_heatmap(r: Ranking, path: Path, top: int = 30, max_classes: int = 40) -> None:
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
    ax.set_title(f"{r.method}: salience of the top {len(cols)} neurons (scaled per class)")
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


def _curves(ax, frame: pd.DataFrame, which_col: str, value: str) -> None:
    """One line per (method, which neurons) of `value` against k, a colour per method."""
    styles = {"top": "o-", "random": "s--", "bottom": "v:"}
    for i, (method, g) in enumerate(frame.groupby("method")):
        for which, gg in g.groupby(which_col):
            gg = gg.groupby("k")[value].mean()
            ax.plot(gg.index, gg.values, styles.get(which, "o-"), color=f"C{i}", label=f"{method} {which}")
    ax.legend(fontsize=7)


def accuracy_vs_k(curves: pd.DataFrame, path: Path, title: str) -> None:
    """Retrained-probe accuracy vs k (top / random / bottom neurons), one colour per method;
    ablation drops in a second panel when present."""
    plt = _plt()
    retrain = curves[curves["kind"] == "retrain"]
    abl = curves[curves["kind"] == "ablation"]
    fig, axes = plt.subplots(1, 2 if len(abl) else 1, figsize=(11 if len(abl) else 6, 4), squeeze=False)
    _curves(axes[0, 0], retrain, "neurons", "accuracy")
    axes[0, 0].set(xscale="log", xlabel="k neurons", ylabel="test accuracy", title="probe retrained on k neurons")
    if len(abl):
        _curves(axes[0, 1], abl, "ablated", "drop")
        axes[0, 1].set(xscale="log", xlabel="k neurons ablated", ylabel="accuracy drop", title="ablation in the trained probe")
    fig.suptitle(title)
    _save(fig, path)
