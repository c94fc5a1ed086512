"""The report folder of an end-to-end run: one index.html (opens from disk) linking the concept
explorer, the alignment, probing and neuron plots, the summary tables and the concept dataset."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pandas as pd

from concepts.core.artifacts import atomic_publish_dir, atomic_write_text, unique_tmp


def copy_into(src: Path, dst: Path) -> Path | None:
    src = Path(src)
    if not src.exists():
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        tmp = unique_tmp(dst)
        shutil.copytree(src, tmp)
        atomic_publish_dir(tmp, dst)
    else:
        tmp = unique_tmp(dst)
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return dst


def _table(df: pd.DataFrame, max_rows: int = 40) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    # an empty cell (a layer one report lacks, a number a skipped probe has not) reads as a dash, not NaN
    return df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t",
                                     na_rep="–")


_STYLE = """body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
img{max-width:100%;border:1px solid #eee;margin:6px 0}.t{border-collapse:collapse;font-size:12px}
.t td,.t th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}.t th{background:#f4f4f4}
.links a{margin-right:14px}.meta{color:#555;font-size:13px}"""


def write_index(root: Path, title: str, meta: dict, sections: list[tuple[str, str]]) -> Path:
    """`sections`: (heading, inner HTML). Returns the index path."""
    body = [f"<h1>{html.escape(title)}</h1>",
            "<p class='meta'>" + " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in meta.items()) + "</p>"]
    for head, inner in sections:
        body.append(f"<section><h2>{html.escape(head)}</h2>{inner}</section>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")
    index = Path(root) / "index.html"
    atomic_write_text(index, page)
    return index


def img(rel: str, alt: str) -> str:
    return f"<img src='{html.escape(rel)}' alt='{html.escape(alt)}'>"


def link(rel: str, text: str) -> str:
    return f"<a href='{html.escape(rel)}'>{html.escape(text)}</a>"


def table(df: pd.DataFrame, max_rows: int = 40) -> str:
    return _table(df, max_rows)


FLAG_TEXT = {
    "type_split_control": "split=type: no test word type is seen in training, so the control task is at chance and "
                          "selectivity is inflated; read the lexical baseline instead",
    "below_lexical": "the probe does no better than the word lookup (its 95% interval reaches the lookup's "
                     "accuracy): it may measure word identity only",
    "below_majority": "the probe is below always answering the most frequent training label",
    "few_positives": "a class has fewer test tokens than probing.min_test_class: its number rests on a handful of words",
    "not_selective": "the selectivity interval reaches 0: the probe does no better on the task than on its control task",
}


def _ci(v, lo, hi) -> str:
    if pd.isna(v):
        return "-"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) and pd.notna(hi) else f"{v:.3f}"


def probe_table(probing: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The report's probing table: per (probe kind, layer) accuracy and selectivity with 95%
    intervals, the lexical and majority baselines, and the caveats (flags); plus notes."""
    from probing.summary import layer_means, line_key, scored

    if probing is None or probing.empty:
        return pd.DataFrame(), ""
    skipped = probing[probing["skipped"].notna()] if "skipped" in probing else probing.iloc[:0]
    probing = scored(probing)
    if probing.empty:
        return pd.DataFrame(), f"<p class='meta'>All {len(skipped)} probing tasks were skipped (reasons in the summary).</p>"
    df = probing.assign(line=probing.apply(line_key, axis=1))
    means = layer_means(df)
    flags = df.groupby(["line", "layer"])["flags"].apply(
        lambda f: sorted({x for v in f.fillna("") for x in str(v).split(";") if x}))
    majority = df.groupby(["line", "layer"])["majority_accuracy"].mean()
    balanced = (df.groupby(["line", "layer"])["balanced_accuracy"].mean() if "balanced_accuracy" in df
                else pd.Series(dtype=float))
    rows = []
    for _, r in means.iterrows():
        key = (r["line"], r["layer"])
        fl = flags.get(key, [])
        rows.append({"probe": r["line"], "layer": int(r["layer"]), "probes": int(r["probes"]),
                     "accuracy [95% CI]": _ci(r["accuracy"], r.get("accuracy_lo"), r.get("accuracy_hi")),
                     "balanced": balanced.get(key),
                     "lexical": r["lexical_accuracy"], "majority": majority.get(key),
                     "control": r["control_accuracy"],
                     "selectivity [95% CI]": _ci(r["selectivity"], r.get("selectivity_lo"), r.get("selectivity_hi")),
                     "flags": ", ".join(fl)})
    seen = sorted({f for fl in flags for f in fl})
    covers = sorted({str(v) for v in df.get("interval", pd.Series(dtype=object)).dropna() if v})
    notes = ("<p class='meta'>Intervals: one probe, its own: " + html.escape("; ".join(covers) or "95%") + ". Several "
             "probes (concepts of a layer): mean +- 1.96 SE over the probes. balanced: the mean of the classes' "
             "recalls. lexical: a word -> label lookup learned on the training split (the stronger of case-folded "
             "and case-sensitive); majority: the most frequent training label.</p>")
    if len(skipped):
        notes += (f"<p class='meta'>{len(skipped)} task(s) skipped, e.g. {html.escape(str(skipped['task'].iloc[0]))}: "
                  f"{html.escape(str(skipped['skipped'].iloc[0]))} (all reasons in the probing summary).</p>")
    if seen:
        notes += "<ul>" + "".join(f"<li><b>{html.escape(f)}</b>: {html.escape(FLAG_TEXT.get(f, f))}</li>" for f in seen) + "</ul>"
    return pd.DataFrame(rows), notes


def scale_section(scale: dict) -> str:
    """Outlier dimensions per unit, and whether raw and standardised rankings agree."""
    if not scale:
        return ""
    from neurons.scale import describe

    rows, disagree = [], []
    for unit, rep in sorted(scale.items()):
        if not rep:
            continue
        cmp = rep.get("compare")
        rows.append({"unit": unit, "outlier dimensions (sd x median, offset)": ", ".join(
            f"{o['neuron']} ({o['sd_ratio']:g}, {o['offset']:g})" for o in rep.get("outliers", [])[:5]) or "none",
            "raw vs standardised top-10 shared": f"{cmp['overlap']}/{cmp['top']}" if cmp else "scale-invariant",
            "outliers in raw top-10": ", ".join(rep.get("outliers_in_raw_top", [])) or "-"})
        if rep.get("disagree"):
            disagree.append(describe(unit, rep))
    text = "<h3>Scale check: outlier neurons and raw vs standardised rankings</h3>" + table(pd.DataFrame(rows), 60)
    if disagree:
        text += ("<p>Raw and standardised rankings disagree; on raw activations wide neurons can lead without carrying "
                 "class information:</p><ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in disagree) + "</ul>")
    return text


def super_sub_table(sub: pd.DataFrame, concepts_dir: Path, k: int, label_source: str | None, top_words: int = 5,
                    per_super: int = 3) -> str:
    """The super/sub overlap with each sub concept's label of record and top words, linked into
    the explorer (explorer.html#L<layer>-C<id>): a collapsible table per layer, the `per_super`
    sub concepts of each super concept with the largest share (the whole table is neurons-super-sub.csv)."""
    from concepts.annotation.dataset import label_of_record
    from concepts.discovery.records import read_concepts

    if sub is None or sub.empty:
        return table(sub)
    info = {}
    for layer in sorted(set(sub["layer"])):
        f = Path(concepts_dir) / f"layer_{int(layer):02d}" / f"concepts-K{k}.jsonl"
        for c in read_concepts(f) if f.exists() else []:
            ann = label_of_record(c, label_source)
            words = ", ".join(list(c.type_counts)[:top_words])  # most frequent first
            info[(int(layer), f"C{c.concept_id}")] = (ann.label if ann else "", words)
    head = "".join(f"<th>{h}</th>" for h in ("layer", "super", "sub", "label", "top words", "tokens", "shared", "share"))
    parts = []
    for i, (layer, part) in enumerate(sub.groupby("layer", sort=True)):
        # a layer each (the first open): per super concept, its sub concepts sharing most top neurons
        shown = (part.sort_values(["share", "sub_tokens"], ascending=False).groupby("super", sort=False)
                 .head(per_super).sort_values(["super", "share"], ascending=[True, False], kind="stable"))
        rows = []
        for _, r in shown.iterrows():
            label, words = info.get((int(r["layer"]), str(r["sub"])), ("", ""))
            rows.append(f"<tr><td>{int(r['layer'])}</td><td>{html.escape(str(r['super']))}</td>"
                        f"<td><a href='explorer.html#L{int(r['layer'])}-{html.escape(str(r['sub']))}'>{html.escape(str(r['sub']))}</a></td>"
                        f"<td>{html.escape(label or '')}</td><td>{html.escape(words)}</td><td>{int(r['sub_tokens'])}</td>"
                        f"<td>{int(r['shared'])}</td><td>{float(r['share']):.2f}</td></tr>")
        summary = (f"layer {int(layer)}: {len(part)} sub concepts under {part['super'].nunique()} super concepts, "
                   f"mean share {part['share'].mean():.2f} (showing the top {per_super} of each)")
        parts.append(f"<details{' open' if i == 0 else ''}><summary>{summary}</summary>"
                     f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")
    return "".join(parts)


def report_name(cfg, model: str) -> str:
    """`<model>-<corpus>`, with `-layer<N>` (or `-layers<a>_<b>`) when the run covers only some layers,
    so that the jobs of a layer sweep each keep their own report."""
    name = f"{model}-{cfg.corpus.name}"
    if cfg.layer == "all" or cfg.layer is None:
        return name
    layers = [cfg.layer] if isinstance(cfg.layer, (int, str)) else list(cfg.layer)
    return name + (f"-layer{layers[0]}" if len(layers) == 1 else "-layers" + "_".join(map(str, layers)))
