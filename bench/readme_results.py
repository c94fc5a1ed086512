"""Rewrite the README's demo figures from the files a `make demo` run wrote, so they cannot drift.

    .venv/bin/python bench/readme_results.py [--report workspace/report/minilm-ewt] [--readme README.md]

Everything between `<!-- demo-results:start -->` and `<!-- demo-results:end -->` is replaced: the
run's date and machine, its stage timings, and the table next to the paper's setting. The numbers
come from the report folder: `report.json` (model, layers, stage seconds, written), `alignment.csv`,
`probing.csv`, `neurons-curves.csv` and `dataset/concepts-K*.parquet`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import pandas as pd

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"


def _f(v, nd: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{nd}f}"


def _pct(v) -> str:
    return "–" if v is None or v != v else f"{100 * v:.0f}%"


def machine() -> str:
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores{f' ({cpu})' if cpu else ''}, {platform.system()}"


def figures(report: Path) -> dict:
    """The demo's figures from its report folder."""
    meta = json.loads((report / "report.json").read_text())
    align = pd.read_csv(report / "alignment.csv")
    probing = pd.read_csv(report / "probing.csv")
    curves = pd.read_csv(report / "neurons-curves.csv") if (report / "neurons-curves.csv").exists() else pd.DataFrame()
    dataset = sorted((report / "dataset").glob("concepts-K*.parquet"))
    ds = pd.read_parquet(dataset[0], columns=["layer", "size", "label", "words"]) if dataset else pd.DataFrame()
    layers = sorted(int(x) for x in align["layer"].unique())
    first, last = layers[0], layers[-1]
    probed = sorted(int(x) for x in probing["layer"].unique())
    middle = (int(meta["layers_in_model"]) - 1) // 2  # the model's middle layer, else the middle of those probed
    mid = middle if middle in probed else probed[len(probed) // 2]
    out = {"model": meta["model"], "corpus": meta["corpus"], "layers_in_model": meta["layers_in_model"],
           "layers": layers, "first": first, "mid": mid, "last": last, "stages": meta["stages"],
           "written": time.strftime("%Y-%m-%d", time.localtime((report / "report.json").stat().st_mtime))}
    per_layer = align[align["tag_set"] == align["tag_set"].iloc[0]]
    out["concepts"] = int(per_layer["concepts"].sum())
    out["k"] = int(per_layer["concepts"].iloc[0])
    if len(ds):
        out["labelled"] = int(ds["label"].notna().sum())
        out["unlabelled"] = int(ds["label"].isna().sum())
        one = ds[ds["layer"] == first]
        out["tokens_per_layer"] = int(one["size"].sum())
    shares = {}
    for tag_set in ("upos", "xpos", "wordnet"):
        a = align[align["tag_set"] == tag_set].set_index("layer")["concept_share"]
        if len(a):
            shares[tag_set] = (a.get(first), a.get(last))
    out["shares"] = shares
    upos = probing[(probing["source"] == "tag") & (probing["task"] == "upos")].set_index("layer")
    out["upos"] = {int(layer): upos.loc[layer] for layer in (first, mid, last) if layer in upos.index}
    conc = probing[probing["source"] == "concepts"].set_index("layer")
    out["concept_probe"] = {int(layer): conc.loc[layer] for layer in (first, last) if layer in conc.index}
    if len(curves):
        c = curves[(curves["kind"] == "retrain") & (curves["unit"] == f"layer_{mid:02d}") & (curves["task"] == "upos")]
        k = 10 if (c["k"] == 10).any() else (int(c["k"].min()) if len(c) else None)
        c = c[c["k"] == k]
        if len(c):
            top, rnd = c[c["neurons"] == "top"]["accuracy"].mean(), c[c["neurons"] == "random"]["accuracy"].mean()
            out["neurons"] = (k, c["method"].iloc[0], top, rnd)
    return out


def block(fig: dict, command: str = "make demo") -> str:
    """The README's demo section body."""
    s = fig["stages"]
    total = sum(s.values())
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in s.items())
    f, m, last = fig["first"], fig["mid"], fig["last"]
    rows = [
        ("models x layers", "5 x 13 (BERT, RoBERTa, XLNet, ALBERT, XLM-R base)",
         f"1 x {fig['layers_in_model']} ({fig['model']})"),
        ("concepts", "39,000 (K=600 per layer)", f"{fig['concepts']:,} (K={fig['k']} per layer)"),
    ]
    if "tokens_per_layer" in fig:
        rows.append(("tokens clustered per layer", "~250,000", f"{fig['tokens_per_layer']:,}"))
    rows.append(("clustering", "agglomerative Ward", "exact agglomerative Ward (same tree as SciPy)"))
    if "labelled" in fig:
        rows.append(("labels", "ChatGPT, the default prompt",
                     f"aligned tags: {fig['labelled']:,} labelled, {fig['unlabelled']:,} unaligned (θ=0.9)"))
    if fig["shares"]:
        names = " / ".join(n.upper() if n != "wordnet" else "WordNet supersense" for n in fig["shares"])
        vals = " / ".join(f"{_pct(a)} → {_pct(b)}" for a, b in fig["shares"].values())
        rows.append((f"concepts aligned with {names}, layer {f} → {last}", "–", vals))
    if fig["upos"]:
        cells = " / ".join(
            f"{_f(r['accuracy'])} [{_f(r['accuracy_low'])}, {_f(r['accuracy_high'])}] (control {_f(r['control_accuracy'])}, "
            f"selectivity {_f(r['selectivity'], 2)}; lookup {_f(r['lexical_accuracy'])})" for r in fig["upos"].values())
        rows.append((f"UPOS probe accuracy, layer {' / '.join(map(str, fig['upos']))}", "–", cells))
    if fig["concept_probe"]:
        cells = " / ".join(
            f"{_f(r['accuracy'])} [{_f(r['accuracy_low'])}, {_f(r['accuracy_high'])}] (selectivity {_f(r['selectivity'], 2)}; "
            f"lookup {_f(r['lexical_accuracy'])})" for r in fig["concept_probe"].values())
        rows.append((f"probe on the largest labelled concepts, layer {' / '.join(map(str, fig['concept_probe']))}", "–", cells))
    if "neurons" in fig:
        k, method, top, rnd = fig["neurons"]
        rows.append((f"UPOS, probe on the top-{k} {method} neurons vs {k} random, layer {m}", "–", f"{_f(top)} vs {_f(rnd)}"))
    table = "\n".join(["| | Mousi et al. 2023 (TCN) | this demo |", "|---|---|---|",
                       *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    return (f"Measured by `{command}` on {fig['written']}, {machine()}: the pipeline took {total / 60:.1f} minutes "
            f"({stages}). Rewritten from that run's report folder by `bench/readme_results.py`.\n\n{table}")


def rewrite(readme: Path, text: str) -> bool:
    """Replace the block between the markers; False when the README has no markers."""
    old = readme.read_text(encoding="utf-8")
    pat = re.compile(re.escape(START) + ".*?" + re.escape(END), flags=re.S)
    if not pat.search(old):
        return False
    readme.write_text(pat.sub(lambda _: f"{START}\n{text}\n{END}", old), encoding="utf-8")
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", default="workspace/report/minilm-ewt")
    ap.add_argument("--readme", default="README.md")
    args = ap.parse_args()
    text = block(figures(Path(args.report)))
    if not rewrite(Path(args.readme), text):
        raise SystemExit(f"{args.readme} has no {START} ... {END} block")
    print(text)


if __name__ == "__main__":
    main()
