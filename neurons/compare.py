"""A page that compares pipeline reports: a model or layer sweep (or any set of runs), one line per
model (reports of one model and corpus, such as a layer sweep's jobs, join into one line).

    python -m neurons.compare workspace/report/minilm-ewt workspace/report/gpt2-ewt --out workspace/report/compare
    (a `neurons.pipeline -m model=...` sweep writes one by itself: `<workspace>/report/compare-<sweep>/`)

Sections: alignment per tag set (small multiples: concept share by layer, one line per report),
gold-tag probe accuracy and selectivity, and the accuracy of probes retrained on the top-k
neurons (one panel per k). The x axis is the layer, or the relative depth layer / (layers - 1)
when the reports' models differ in depth.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback

from neurons import report as rep
from neurons.plots import small_multiples, unit_layer

log = logging.getLogger(__name__)


def load_report(folder: Path) -> dict:
    """The tables of one pipeline report folder (any may be empty), its series name (the model and
    corpus; the folder's name for reports written before report.json said so) and its model's depth."""
    folder = Path(folder)

    def read(name: str) -> pd.DataFrame:
        f = folder / name
        return pd.read_csv(f) if f.exists() and f.stat().st_size > 1 else pd.DataFrame()

    marker = folder / "report.json"
    meta = json.loads(marker.read_text()) if marker.exists() else {}
    name = f"{meta['model']}-{meta['corpus']}" if meta.get("model") and meta.get("corpus") else folder.name
    out = {"name": name, "folders": [folder], "alignment": read("alignment.csv"), "probing": read("probing.csv"),
           "curves": read("neurons-curves.csv"), "depth": meta.get("layers_in_model")}
    if out["depth"] is None:
        out["depth"] = _depth(out)
    return out


def merge_series(reports: list[dict]) -> list[dict]:
    """Reports of one model and corpus (the jobs of a layer sweep, a layer each) as one series:
    their tables concatenated, a layer's rows taken from the first report that has it."""
    series: dict[str, dict] = {}
    for r in reports:
        s = series.get(r["name"])
        if s is not None and _own_layers(r) & _own_layers(s):  # same model and corpus, other settings:
            r = {**r, "name": r["folders"][0].name}  # a line of its own, named by its folder
            s = series.get(r["name"])
        if s is None:
            series[r["name"]] = {**r, "folders": list(r["folders"])}
            continue
        s["folders"] += r["folders"]
        s["depth"] = max(s["depth"], r["depth"])
        for key, layer_of in (("alignment", lambda d: d["layer"]), ("probing", lambda d: d["layer"]),
                              ("curves", lambda d: d["unit"])):
            new = r[key]
            if not len(new):
                continue
            old = s[key]
            if len(old):
                new = new[~layer_of(new).isin(set(layer_of(old)))]
            s[key] = pd.concat([old, new], ignore_index=True) if len(old) else new
    return list(series.values())


def _own_layers(r: dict) -> set[int]:
    """The layers a report probed (its alignment table's where it has no probes)."""
    for key in ("probing", "alignment"):
        if "layer" in r[key] and len(r[key]):
            return {int(x) for x in r[key]["layer"]}
    return set()


def _depth(r: dict) -> int:
    layers = [int(x) for df in (r["alignment"], r["probing"]) if "layer" in df for x in df["layer"]]
    return max(layers) + 1 if layers else 1


def _x(df: pd.DataFrame, depth: int, relative: bool) -> pd.Series:
    return df["layer"] / max(depth - 1, 1) if relative else df["layer"]


def write_comparison(folders: list[Path], out: Path) -> Path:
    """The comparison page of these report folders; returns its index.html."""
    reports = merge_series([load_report(f) for f in folders])
    depths = {r["name"]: r["depth"] for r in reports}
    relative = len(set(depths.values())) > 1
    xlabel = "relative depth (layer / last layer)" if relative else "layer"
    out = Path(out)
    sections = []
    # alignment: one panel per tag set
    panels: dict = {}
    for r in reports:
        a = r["alignment"]
        for tag_set, part in (a.groupby("tag_set") if len(a) else []):
            part = part.sort_values("layer")
            panels.setdefault(tag_set, []).append((r["name"], _x(part, depths[r["name"]], relative), part["concept_share"]))
    if panels:
        small_multiples(out / "alignment.png", panels, xlabel, "share of concepts aligned")
        sections.append(("Alignment with human-defined tags", rep.img("alignment.png", "alignment by tag set")))
    # gold-tag probes
    acc: dict = {}
    for r in reports:
        p = r["probing"]
        gold = p[p["source"] == "tag"] if len(p) else p
        for task, part in (gold.groupby("task") if len(gold) else []):
            part = part.groupby("layer", as_index=False)[["accuracy", "selectivity"]].mean().sort_values("layer")
            x = _x(part, depths[r["name"]], relative)
            acc.setdefault(f"{task} accuracy", []).append((r["name"], x, part["accuracy"]))
            acc.setdefault(f"{task} selectivity", []).append((r["name"], x, part["selectivity"]))
    if acc:
        small_multiples(out / "probing.png", acc, xlabel, "test accuracy / selectivity")
        table = pd.concat([r["probing"].assign(report=r["name"]) for r in reports if len(r["probing"])])
        table = table[table["source"] == "tag"].pivot_table(index="layer", columns="report", values="accuracy").reset_index()
        table.columns.name = None
        sections.append(("Gold-tag probes", rep.img("probing.png", "probe accuracy and selectivity") + rep.table(table, 60)))
    # neuron top-k curves: accuracy of probes retrained on the top-k neurons, one panel per k
    tops: dict = {}
    for r in reports:
        c = r["curves"]
        if not len(c):
            continue
        top = c[(c["kind"] == "retrain") & (c["neurons"] == "top")]
        top = top.assign(layer=unit_layer(top["unit"].astype(str))).dropna(subset=["layer"])
        for k, part in top.groupby("k"):
            part = part.sort_values("layer")
            tops.setdefault(f"top {k} neurons", []).append((r["name"], _x(part, depths[r["name"]], relative), part["accuracy"]))
    if tops:
        small_multiples(out / "neurons.png", tops, xlabel, "probe accuracy on the top-k neurons")
        sections.append(("Neurons", rep.img("neurons.png", "top-k neuron probes by layer")))
    links = " ".join(rep.link(str(Path(f).resolve() / "index.html"), Path(f).name) for r in reports for f in r["folders"])
    sections.insert(0, ("Reports", f"<p class='links'>{links}</p>"))
    meta = {"reports": len(folders), "series": len(reports), "x axis": xlabel,
            "layers": ", ".join(f"{n} {d}" for n, d in depths.items())}
    return rep.write_index(out, "Comparison of " + ", ".join(r["name"] for r in reports), meta, sections)


class CompareSweep(Callback):
    """Hydra callback: at the end of a neurons.pipeline multirun, a comparison page of its reports."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        folders = sorted({Path(f.read_text().strip()) for f in sweep.glob("*/report-path.txt")})
        folders = [f for f in folders if (f / "index.html").exists()]
        if len(folders) < 2:
            return
        root = Path(config.get("paths", {}).get("workspace", "workspace")) / "report" / f"compare-{sweep.name}"
        index = write_comparison(folders, root)
        log.info("comparison of %d reports: %s", len(folders), index.resolve().as_uri())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description="Compare pipeline report folders (one line per report).")
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    missing = [f for f in args.folders if not (f / "index.html").exists()]
    if missing:
        log.error("%s is not a pipeline report folder (no index.html)", missing[0])
        return 2
    log.info("%s", write_comparison(args.folders, args.out).resolve().as_uri())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
