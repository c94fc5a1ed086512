"""kill -9 in each stage of the pipeline, then a re-run: the outputs equal those of a run that was
never interrupted (in another workspace), file by file, timings and paths aside."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent

# the stage and a file that appears while it runs (published atomically): the kill lands just after
KILL_POINTS = {
    "extract": "*/*/activations/shards/shard-00002/meta.json",
    "discover": "*/*/concepts/ward-*/layer_01/alignment-K12.json",
    "annotate": "*/*/concepts/ward-*/annotations/*.json",
    "probing": "*/*/probing/tag-upos-*/layer_01/upos.json",
    "rank": "*/*/neurons/upos-*/layer_01/ranking.json",
    "report": "report/*/neurons-curves.csv",
}

# timings, versions, and what this invocation did (records_changed: a resumed run changes fewer records than one
# uninterrupted run, though the records it leaves are the same)
VOLATILE = ("seconds", "time", "took", "wall", "created", "versions", "timestamp", "records_changed")


def _args(model, corpus, ws) -> list[str]:
    return ["model=hf", f"model.name_or_path={model}", "model.name=tiny", "corpus=ewt", f"corpus.path={corpus}",
            "corpus.name=tagged", "corpus.splits=[train]", f"paths.workspace={ws}", "extraction.progress=false",
            "extraction.shard_sentences=10", "sampling.min_count=1", "sampling.max_per_type=20", "discovery.k=12",
            "probing.min_examples=3", "neurons.ks=[2,8]", "neurons.max_tokens=1000", "pipeline.concept_top=4",
            "logger=none"]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def _pipeline(args, cwd, kill_at: str | None = None, timeout=300) -> bool:
    """Run the pipeline; with `kill_at`, SIGKILL its process group as soon as a file matching the glob
    exists under `cwd`'s workspace. True when it was killed."""
    proc = subprocess.Popen([sys.executable, "-m", "neurons.pipeline", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    ws = Path(cwd) / "ws"
    t0 = time.monotonic()
    while proc.poll() is None:
        if kill_at and any(ws.glob(kill_at)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the pipeline did not finish in time")
        time.sleep(0.01)
    err = proc.stderr.read()
    assert proc.returncode == 0, err[-3000:]
    return False


def _clean(obj, ws: str):
    if isinstance(obj, dict):
        return {k: _clean(v, ws) for k, v in obj.items() if not any(w in k.lower() for w in VOLATILE)}
    if isinstance(obj, list):
        return [_clean(v, ws) for v in obj]
    if isinstance(obj, str):
        return obj.replace(ws, "<ws>")
    return obj


def _frame(df: pd.DataFrame, ws: str) -> pd.DataFrame:
    df = df[[c for c in df.columns if not any(w in c.lower() for w in VOLATILE)]]
    return df.map(lambda v: v.replace(ws, "<ws>") if isinstance(v, str) else v)


def outputs(ws: Path) -> dict:
    """Every output file of the workspace, read and cleaned of timings and the workspace's path."""
    out = {}
    for f in sorted(ws.rglob("*")):
        rel = str(f.relative_to(ws))
        if (not f.is_file() or "/wandb/" in f"/{rel}" or rel.startswith("logs/")  # Hydra's run logs
                or f.suffix in (".png", ".html", ".lock", ".log")):
            continue
        if f.suffix == ".npy":
            out[rel] = np.load(f)
        elif f.name == "report.json":  # the report's marker: a hash of input paths, and stage timings
            out[rel] = sorted(json.loads(f.read_text()))
        elif f.suffix == ".json":
            out[rel] = _clean(json.loads(f.read_text()), str(ws))
        elif f.suffix == ".jsonl":
            out[rel] = [_clean(json.loads(line), str(ws)) for line in f.read_text().splitlines() if line.strip()]
        elif f.suffix == ".csv":
            out[rel] = _frame(pd.read_csv(f), str(ws))
        elif f.suffix == ".parquet":
            out[rel] = _frame(pd.read_parquet(f), str(ws))
        else:
            out[rel] = f.read_bytes().replace(str(ws).encode(), b"<ws>")
    return out


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b), f"files differ: {sorted(set(a) ^ set(b))}"
    for rel in a:
        x, y = a[rel], b[rel]
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=rel)
        elif isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, obj=rel)
        else:
            assert x == y, rel


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, tmp_path_factory):
    from conftest import write_tagged_corpus

    corpus = write_tagged_corpus(tmp_path_factory.mktemp("corpus") / "tagged.conllu")
    cwd = tmp_path_factory.mktemp("base")
    _pipeline(_args(tiny_models["bert"], corpus, cwd / "ws"), cwd)
    return corpus, outputs(cwd / "ws")


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(KILL_POINTS))
def test_kill_9_in_a_stage_then_rerun_equals_an_uninterrupted_run(stage, tiny_models, uninterrupted, tmp_path):
    corpus, expected = uninterrupted
    args = _args(tiny_models["bert"], corpus, tmp_path / "ws")
    assert _pipeline(args, tmp_path, kill_at=KILL_POINTS[stage]), f"the pipeline ended before {stage} was reached"
    _pipeline(args, tmp_path)
    assert_same(outputs(tmp_path / "ws"), expected)


def test_a_write_killed_midway_leaves_a_temp_file_that_the_next_write_removes(tmp_path):
    """kill -9 during `atomic_write_text`: the target is untouched and the killed writer's temp file
    is removed by the next write of that file; a live writer's temp file stays."""
    from concepts.core.artifacts import atomic_write_text

    target = tmp_path / "scale.json"
    target.write_text("old\n")
    writer = ("import sys, time; from concepts.artifacts import atomic_write_text\n"
              "def parts():\n    yield 'half'\n    sys.stdout.write('writing\\n'); sys.stdout.flush(); time.sleep(60)\n    yield 'rest'\n"
              f"atomic_write_text({str(target)!r}, parts())\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer], env=_env(), stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.stdout.readline() == "writing\n"
    temps = sorted(tmp_path.glob(".scale.json.*.tmp"))
    assert len(temps) == 2 and target.read_text() == "old\n"
    procs[0].kill()
    procs[0].wait()
    atomic_write_text(target, "new\n")
    left = sorted(tmp_path.glob(".scale.json.*.tmp"))
    assert target.read_text() == "new\n"
    assert len(left) == 1 and f"~{procs[1].pid}." in left[0].name  # the live writer's only
    procs[1].kill()
    procs[1].wait()
    # the temp names that keep the suffix (parquet writers) are cleaned the same way
    from concepts.core.artifacts import unique_tmp

    dead = unique_tmp(tmp_path / "summary.parquet")
    dead = dead.with_name(dead.name.replace(f"~{os.getpid()}.", f"~{procs[0].pid}."))
    dead.write_bytes(b"half")
    fresh = unique_tmp(tmp_path / "summary.parquet")
    assert not dead.exists() and fresh.name.endswith(".tmp.parquet") and f"~{os.getpid()}." in fresh.name
