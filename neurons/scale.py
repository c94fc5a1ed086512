"""Does a neuron's scale drive a ranking? Outlier dimensions and raw vs standardised rankings.

BERT-family models have a few "outlier" (rogue) dimensions, with a spread or an offset far
beyond the layer's typical neuron. Scale-sensitive rankers (Probeless) put such neurons on
top on raw activations whether or not they carry class information. For one unit (a layer,
or concatenated layers) this module names the outlier dimensions of each layer and, for a
scale-sensitive method, compares the ranking on raw and on standardised activations.

A neuron is an outlier of its layer when its sd is at least `spread` times the layer's median
sd, or its mean is at least `offset` median sds away from the layer's median mean.
"""

from __future__ import annotations

import numpy as np

from neurons.rankers import Ranker, make_ranker
from neurons.ranking import Ranking


def outlier_dims(X: np.ndarray, names: list[str], layers: list[int], spread: float = 3.0,
                 offset: float = 5.0) -> list[dict]:
    """Outlier neurons of `X [n, len(layers) * dim]` (layers side by side), most extreme first:
    {neuron, layer, sd_ratio, offset} where sd_ratio = sd / median sd of its layer and offset =
    |mean - median mean| / median sd."""
    dim = X.shape[1] // len(layers)
    out = []
    for i, layer in enumerate(layers):
        block = np.asarray(X[:, i * dim:(i + 1) * dim], dtype=np.float64)
        sd, mean = block.std(0), block.mean(0)
        typical = max(float(np.median(sd)), 1e-12)
        ratio = sd / typical
        off = np.abs(mean - np.median(mean)) / typical
        for j in np.flatnonzero((ratio >= spread) | (off >= offset)):
            out.append({"neuron": names[i * dim + j], "layer": layer, "sd_ratio": round(float(ratio[j]), 2),
                        "offset": round(float(off[j]), 2)})
    return sorted(out, key=lambda r: -max(r["sd_ratio"], r["offset"]))


def raw_vs_standardized(ranker: Ranker, ranking: Ranking, X: np.ndarray, y: np.ndarray, method: str,
                        params: dict, top: int = 10) -> dict | None:
    """For a scale-sensitive method, the same ranker on the other input (raw if `ranking` is
    standardised, else standardised) and the overlap of the overall top-`top` sets.
    None for scale-invariant methods."""
    if not ranker.scale_sensitive:
        return None
    std = ranking.meta.get("standardized", False)
    other = make_ranker(method, **{**params, "standardize": not std}).rank(X, y, ranking.classes, ranking.neurons)
    raw, stdz = (other, ranking) if std else (ranking, other)
    a, b = raw.top(min(top, raw.dim)), stdz.top(min(top, stdz.dim))
    return {"top": int(len(a)), "overlap": len(set(a.tolist()) & set(b.tolist())),
            "raw_top": [raw.neurons[i] for i in a], "standardized_top": [stdz.neurons[i] for i in b]}


def scale_report(ranker: Ranker, ranking: Ranking, X: np.ndarray, y: np.ndarray, method: str, params: dict,
                 layers: list[int], top: int = 10, spread: float = 3.0, offset: float = 5.0) -> dict:
    """The unit's outlier dimensions and, for scale-sensitive methods, raw vs standardised."""
    outliers = outlier_dims(X, ranking.neurons, layers, spread, offset)
    cmp = raw_vs_standardized(ranker, ranking, X, y, method, params, top)
    report = {"standardized": bool(ranking.meta.get("standardized", False)), "scale_sensitive": ranker.scale_sensitive,
              "outliers": outliers, "compare": cmp}
    if cmp is not None:
        names = {o["neuron"] for o in outliers}
        report["outliers_in_raw_top"] = [n for n in cmp["raw_top"] if n in names]
        report["outliers_in_standardized_top"] = [n for n in cmp["standardized_top"] if n in names]
        report["disagree"] = cmp["overlap"] < cmp["top"]
    return report


def describe(unit: str, report: dict) -> str:
    """One sentence for logs and the report."""
    outs = ", ".join(f"{o['neuron']} (sd x{o['sd_ratio']:g}, offset {o['offset']:g})" for o in report["outliers"][:6])
    text = f"{unit}: outlier dimensions: {outs or 'none'}"
    cmp = report.get("compare")
    if cmp is None:
        return text + "; the method is scale-invariant"
    text += (f"; raw and standardised top-{cmp['top']} share {cmp['overlap']} neurons"
             + (" (they disagree" if report["disagree"] else " (they agree"))
    lead = report.get("outliers_in_raw_top") or []
    if lead:
        text += f"; outliers in the raw top: {', '.join(lead)}"
    return text + ")"
