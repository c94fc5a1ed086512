"""The README's Python API block runs as written (on the embedded model and the shipped corpus,
in a temporary workspace), and what it prints is what the comments say."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.slow
def test_the_api_section_runs_as_written(tmp_path, monkeypatch):
    (block,) = python_blocks("Python API")
    monkeypatch.setenv("CONCEPTS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md (Python API)", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue().splitlines()
    assert printed[0] == "(7, 9, 384)"  # the shape the comment gives (words split on whitespace)
    assert any(" cat " in line for line in printed[1:8])  # the token table's first rows
    labels = [m.group(1) for line in printed if (m := re.match(r"^\d+ (.+?) \['", line))]
    assert len(labels) == 5 and sum(label != "-" for label in labels) >= 2  # annotated: labels, not None
    assert 0.5 < float(printed[-2]) <= 1.0  # the NOUN/VERB probe on the user's own arrays


def test_every_python_block_of_the_readme_is_covered():
    """A new Python block in the README gets a test of its own here (or says why it cannot run)."""
    text = README.read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    with_python = [s for s in sections if python_blocks(s)]
    assert with_python == ["Stage 1: extraction", "Python API"], with_python


def test_the_store_example_runs_as_written(tmp_path, monkeypatch):
    (block,) = python_blocks("Stage 1: extraction")
    monkeypatch.setenv("CONCEPTS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md (the activation store)", "exec"), {"__name__": "__readme__"})
    n, d = eval(out.getvalue().strip())  # noqa: S307 - the tuple the block prints
    assert d == 384 and 100 < n < 2000


def test_demo_figures_are_rewritten_from_a_report_folder(tmp_path):
    """bench/readme_results.py: the README's demo block comes from the report's files (hand-made
    here, so each number in the block can be traced to one cell)."""
    import json
    import sys

    import pandas as pd

    sys.path.insert(0, str(README.parent / "bench"))
    import readme_results as rr

    rep = tmp_path / "report"
    (rep / "dataset").mkdir(parents=True)
    (rep / "report.json").write_text(json.dumps({"model": "minilm", "corpus": "ewt", "layers_in_model": 7,
                                                 "stages": {"extract": 60.0, "discover": 120.0}}))
    pd.DataFrame({"layer": [0, 0, 6, 6], "tag_set": ["upos", "xpos"] * 2, "concepts": [600] * 4,
                  "concept_share": [0.40, 0.19, 0.45, 0.30]}).to_csv(rep / "alignment.csv", index=False)
    row = dict(source="tag", task="upos", accuracy=0.891, accuracy_low=0.888, accuracy_high=0.894, control_accuracy=0.515,
               selectivity=0.376, lexical_accuracy=0.879)
    pd.DataFrame([{**row, "layer": 0}, {**row, "layer": 3, "accuracy": 0.955}, {**row, "layer": 6},
                  {**row, "layer": 6, "source": "concepts", "task": "concepts-L6", "accuracy": 0.935}]).to_csv(
        rep / "probing.csv", index=False)
    pd.DataFrame({"kind": "retrain", "unit": "layer_03", "task": "upos", "method": "probeless", "k": 10,
                  "neurons": ["top", "random"], "accuracy": [0.609, 0.343]}).to_csv(rep / "neurons-curves.csv", index=False)
    pd.DataFrame({"layer": [0, 0, 6], "size": [10, 5, 7], "label": ["UPOS=NOUN", None, "UPOS=VERB"],
                  "words": [["a"], ["b"], ["c"]]}).to_parquet(rep / "dataset" / "concepts-K600.parquet")
    text = rr.block(rr.figures(rep))
    assert "3.0 minutes (extract 60 s, discover 120 s)" in text
    assert "| concepts | 39,000 (K=600 per layer) | 1,200 (K=600 per layer) |" in text
    assert "2 labelled, 1 unaligned" in text and "| tokens clustered per layer | ~250,000 | 15 |" in text
    assert "40% → 45% / 19% → 30%" in text and "0.955 [0.888, 0.894]" in text
    assert "layer 0 / 3 / 6" in text and "0.609 vs 0.343" in text and "0.935" in text
    readme = tmp_path / "R.md"
    readme.write_text(f"a\n{rr.START}\nold\n{rr.END}\nb\n")
    assert rr.rewrite(readme, text) and readme.read_text() == f"a\n{rr.START}\n{text}\n{rr.END}\nb\n"
    assert rr.START in README.read_text() and rr.END in README.read_text()  # the README has the block
