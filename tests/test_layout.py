"""The package layout: stores written before the stage layout still open and are reused, the old
import paths still resolve, and the import graph runs one way (corpus -> extraction -> discovery ->
annotation -> probing -> neurons), without cycles."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OLD = REPO / "tests" / "data" / "layout-v1" / "ws"  # written by the flat layout (see make_fixture.py there)
OVERRIDES = ["model=hf", "model.name_or_path=layout-test/tiny-bert", "model.name=tiny-bert", "corpus.max_sentences=6",
             "extraction.store_dtype=float16", "extraction.layers=[0,2]", "extraction.progress=false"]
DISCOVER = ["discovery.k=4", "sampling.min_count=1", "discovery.layers=[0,2]", "discovery.explorer=false",
            "discovery.plot=false", "discovery.tag_sets=[upos,xpos]"]


def test_a_workspace_written_by_the_previous_layout_is_read_and_reused(tmp_path, monkeypatch):
    """Same config, same folders: the extraction and the discovery find their finished outputs
    (nothing is recomputed: the model, a Hub id absent from this machine, is never loaded), and the
    vectors and concepts read back."""
    from concepts.discovery.records import read_concepts
    from concepts.extraction.store import ActivationStore
    from latent_concepts import api

    ws = tmp_path / "ws"
    shutil.copytree(OLD, ws)
    before = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()}
    monkeypatch.setenv("CONCEPTS_WORKSPACE", str(ws))
    ex = api.run("extract", *OVERRIDES)
    (old_store,) = ws.glob("tiny-bert/*/activations")
    assert Path(ex.store) == old_store
    store = ActivationStore(ex.store)
    assert store.layers == [0, 2] and store.layer(2).shape[1] == 32
    assert len(store.tokens()) == store.layer(0).shape[0] and np.isfinite(store.layer(2)[:]).all()
    disc = api.run("discover", *OVERRIDES, *DISCOVER)
    (old_concepts,) = ws.glob("tiny-bert/*/concepts/ward-*")
    assert disc.path == old_concepts
    concepts = read_concepts(disc.path / "layer_02" / "concepts-K4.jsonl")
    assert len(concepts) == 4 and sum(c.size for c in concepts) > 0
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # nothing rewritten


def test_the_old_import_paths_resolve_to_the_moved_modules():
    import importlib

    import concepts

    assert concepts.MOVED, "the table of moved modules"
    for old, new in concepts.MOVED.items():
        assert importlib.import_module(f"concepts.{old}") is importlib.import_module(new), old
    from concepts.discovery.records import read_concepts  # the README of the previous layout
    from concepts.extraction.store import ActivationStore

    assert ActivationStore.__module__ == "concepts.extraction.store"
    assert read_concepts.__module__ == "concepts.discovery.records"


def _imports(path: Path, package: str) -> set[str]:
    """Modules of this repository that `path` imports (top level and inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("concepts", "probing", "neurons", "latent_concepts")}


def _module_graph() -> dict[str, set[str]]:
    files = {}
    for top in ("concepts", "probing", "neurons", "latent_concepts"):
        for f in (REPO / top).rglob("*.py"):
            rel = f.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            files[name] = f
    graph = {}
    for name, f in files.items():
        package = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _imports(f, package) if m in files and m != name}
    return graph


STAGES = ["concepts.core", "concepts.corpus", "concepts.extraction", "concepts.discovery", "concepts.annotation",
          "probing", "neurons", "latent_concepts"]


def _stage(module: str) -> int | None:
    for i, s in enumerate(STAGES):
        if module == s or module.startswith(s + "."):
            return i
    return None


def test_imports_run_downstream_only():
    """A module imports only its own stage and the stages before it (the thin apps
    concepts.extract|discover|annotate|score sit with the stage they start)."""
    apps = {"concepts.extract": 2, "concepts.discover": 3, "concepts.annotate": 4, "concepts.score": 4}
    upward = []
    for name, deps in _module_graph().items():
        if name == "concepts":  # the table of moved modules imports lazily, on request
            continue
        here = apps.get(name, _stage(name))
        assert here is not None, f"{name} belongs to no stage"
        for d in deps:
            there = apps.get(d, _stage(d))
            if there is not None and there > here:
                upward.append(f"{name} -> {d}")
    assert not upward, upward


def test_no_import_cycles():
    graph = _module_graph()
    # a module imports its package's __init__ when imported; leave those edges out
    graph = {n: {d for d in deps if not n.startswith(d + ".")} for n, deps in graph.items()}
    seen, stack, cycles = {}, [], []

    def visit(n):
        seen[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    assert not cycles, cycles
