"""The report folder of an end-to-end run: one index.html (opens from disk) linking the concept
explorer, the alignment, probing and neuron plots, the summary tables and the concept dataset."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pandas as pd

from concepts.artifacts import atomic_write_text


def copy_into(src: Path, dst: Path) -> Path | None:
    src = Path(src)
    if not src.exists():
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.replace(dst)
    else:
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return dst


def _table(df: pd.DataFrame, max_rows: int = 40) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    return df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t")


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
