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
