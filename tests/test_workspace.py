"""Many runs, one workspace: locks on the units two processes can reach, reports and datasets that
hold exactly their run's layers, parallel runs (two pipelines at once, a joblib sweep, a sweep on a
real one-node SLURM cluster) that give the files of one run after the other, and clean failures on
a full disk or a read-only workspace."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_pipeline
from slurm_cluster import PARTITION, slurm_cluster

from concepts.core.locks import unit_lock

REPO = Path(__file__).resolve().parent.parent


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CONCEPTS_RUN_STAMP"}
    return {**env, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", **extra}


def _cli(module: str, args: list[str], cwd: Path, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", module, *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=900)


# ---------------------------------------------------------------------------------------- locks

def _hold(folder: str, seconds: float, started) -> None:
    with unit_lock(Path(folder), "unit", "a test unit"):
        started.set()
        time.sleep(seconds)
        (Path(folder) / "done.txt").write_text("written by the holder")


def test_a_second_process_waits_for_the_unit_and_then_sees_what_the_first_wrote(tmp_path):
    ctx = mp.get_context("fork")
    started = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), 1.5, started))
    holder.start()
    assert started.wait(30)
    assert (tmp_path / ".unit.lock").read_text().endswith(f"~{holder.pid}")  # names its holder
    t0 = time.perf_counter()
    with unit_lock(tmp_path, "unit", "a test unit") as waited:
        assert waited and time.perf_counter() - t0 > 0.5
        assert (tmp_path / "done.txt").read_text() == "written by the holder"
    holder.join(30)
    assert holder.exitcode == 0
    assert not list(tmp_path.glob(".*.lock"))  # nothing left once the unit is done
    with unit_lock(tmp_path, "unit", "a test unit") as waited:  # free now: no wait
        assert not waited


def _killed_holder(folder: str, started) -> None:
    with unit_lock(Path(folder), "unit", "a test unit"):
        started.set()
        time.sleep(60)


def test_a_killed_holder_does_not_block_the_unit(tmp_path):
    ctx = mp.get_context("fork")
    started = ctx.Event()
    holder = ctx.Process(target=_killed_holder, args=(str(tmp_path), started))
    holder.start()
    assert started.wait(30)
    holder.kill()
    holder.join(30)
    t0 = time.perf_counter()
    with unit_lock(tmp_path, "unit", "a test unit"):  # the kernel dropped the dead holder's lock
        assert time.perf_counter() - t0 < 5
    assert not list(tmp_path.glob(".*.lock"))


# ------------------------------------------------------------------ what two runs compute the same

def _content(ws: Path) -> dict:
    """What a workspace's runs computed, without timings and paths: file set, concept records,
    annotations, datasets, probe numbers, neuron rankings."""
    out: dict = {}
    model = ws / "tiny"
    files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    out["files"] = [f for f in files if "/logs/" not in f]
    assert not [f for f in files if ".tmp" in Path(f).name or f.endswith(".lock")], "temp or lock files left"
    for f in sorted(model.rglob("concepts-K*.jsonl")):
        out[str(f.relative_to(model))] = f.read_text()
    for f in sorted(model.rglob("*.parquet")):
        if "probing" not in f.parts:
            out[str(f.relative_to(model))] = pd.read_parquet(f).astype(str).to_csv()
    for f in sorted(model.rglob("probing/*/layer_*/*.json")):
        r = json.loads(f.read_text())
        out[str(f.relative_to(model))] = (r["accuracy"], r["selectivity"], r["classes"], r["n_test"])
    for f in sorted(model.rglob("neurons/*/*/scores.npy")):
        out[str(f.relative_to(model))] = np.round(np.load(f), 5).tolist()
    return out


def _report_layers(report: Path) -> dict:
    """The layers each view of a report shows."""
    k = 12
    return {
        "alignment": set(pd.read_csv(report / "alignment.csv")["layer"]),
        "probing": set(pd.read_csv(report / "probing.csv")["layer"]),
        "dataset": set(pd.read_parquet(report / "dataset" / f"concepts-K{k}.parquet")["layer"]),
        "jsonl": {json.loads(line)["layer"] for line in (report / "dataset" / f"concepts-K{k}.jsonl").open()},
        "tcn": {int(p.name.removeprefix("layer")) for p in (report / "dataset" / "tcn").glob("layer*")},
        "human_eval": set(pd.read_csv(report / "dataset" / "human-eval.csv")["layer"]),
        "neurons": set(pd.read_csv(report / "neurons-curves.csv")["unit"].str.removeprefix("layer_").astype(int)),
    }


def _shared_dataset_layers(ws: Path) -> dict:
    (ds,) = list(ws.rglob("dataset-K12"))
    return {
        "parquet": set(pd.read_parquet(ds / "concepts-K12.parquet")["layer"]),
        "jsonl": {json.loads(line)["layer"] for line in (ds / "concepts-K12.jsonl").open()},
        "tcn": {int(p.name.removeprefix("layer")) for p in (ds / "tcn").glob("layer*")},
        "human_eval": set(pd.read_csv(ds / "human-eval.csv")["layer"]),
    }


@pytest.mark.slow
def test_two_pipelines_started_together_give_the_files_of_one_after_the_other(tiny_models, tagged_corpus, tmp_path):
    """Two pipelines on one workspace, started at once: both succeed, each unit is computed once
    (the other waits and reuses it), labels survive, and the workspace equals that of two runs one
    after the other."""
    args = lambda ws: tiny_pipeline(tiny_models, tagged_corpus, ws, "pipeline.wandb=false", "runtime.threads=1")  # noqa: E731
    both = [_cli("neurons.pipeline", args(tmp_path / "par"), tmp_path, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in both]
    for p, (out, err) in zip(both, outs):
        assert p.returncode == 0, (out + err)[-3000:]
    logs = "".join(out + err for out, err in outs)
    assert "by another process meanwhile" in logs or "waiting for" in logs  # they did meet
    for _ in range(2):
        seq = _cli("neurons.pipeline", args(tmp_path / "seq"), tmp_path)
        assert seq.returncode == 0, seq.stderr[-3000:]
    par, one_after = _content(tmp_path / "par"), _content(tmp_path / "seq")
    assert par["files"] == one_after["files"]
    assert par == one_after
    records = [json.loads(line) for f in (tmp_path / "par").rglob("concepts-K12.jsonl") if "layer_" in f.parent.name
               for line in f.open()]
    assert records and all(r["annotations"] for r in records)  # no run rewrote the records without their labels


@pytest.fixture(scope="module")
def joblib_sweep(tiny_models, tmp_path_factory):
    """The layer sweep over layers 0 and 2 with two joblib workers at once."""
    from conftest import write_tagged_corpus

    tmp = tmp_path_factory.mktemp("sweep")
    corpus = write_tagged_corpus(tmp / "tagged.conllu")
    args = tiny_pipeline(tiny_models, corpus, tmp / "ws", "experiment=layer_sweep", "layer=0,2", "pipeline.wandb=false",
                         "runtime.threads=1")
    out = _cli("neurons.pipeline", [*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp, corpus, args


@pytest.mark.slow
def test_each_job_of_a_parallel_sweep_reports_its_own_layer_and_the_dataset_covers_all(joblib_sweep):
    tmp, _, _ = joblib_sweep
    for layer in (0, 2):
        views = _report_layers(tmp / "ws" / "report" / f"tiny-tagged-layer{layer}")
        assert all(v == {layer} for v in views.values()), views
    # the concepts folder's released dataset covers every layer it holds, in every format alike
    assert all(v == {0, 2} for v in _shared_dataset_layers(tmp / "ws").values())
    # a later run of layer 1 alone: its report shows layer 1 only, the shared dataset grows to three
    # layers in every format, the other reports are untouched
    before = (tmp / "ws" / "report" / "tiny-tagged-layer0" / "alignment.csv").read_text()
    over = [a for a in joblib_sweep[2] if not a.startswith(("experiment=", "layer="))]
    out = _cli("neurons.pipeline", [*over, "layer=1"], tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert all(v == {1} for v in _report_layers(tmp / "ws" / "report" / "tiny-tagged-layer1").values())
    assert all(v == {0, 1, 2} for v in _shared_dataset_layers(tmp / "ws").values())
    assert (tmp / "ws" / "report" / "tiny-tagged-layer0" / "alignment.csv").read_text() == before


@pytest.mark.slow
def test_the_layer_sweep_on_a_real_slurm_cluster_equals_the_local_sweep(joblib_sweep, tmp_path):
    """`hydra/launcher=slurm` on a one-node SLURM cluster (Debian's slurmctld, slurmd, munge): the
    three-layer sweep's jobs run at once, every job succeeds, each report holds its layer only, and
    the numbers equal those of the local (joblib) sweep."""
    _, corpus, args = joblib_sweep
    over = [a.replace(str(joblib_sweep[0] / "ws"), str(tmp_path / "ws")) for a in args if not a.startswith("layer=")]
    slurm = ["layer=0,1,2", "hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
             "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
             "hydra.launcher.timeout_min=20"]
    with slurm_cluster() as env:
        out = _cli("neurons.pipeline", [*over, *slurm], tmp_path, env=_env(SLURM_CONF=env["SLURM_CONF"]))
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = list((tmp_path / "ws" / "logs" / "pipeline-multirun").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 3 and all((j / "report-path.txt").exists() for j in jobs)  # every job finished its run
    submitit_logs = list((sweep / ".submitit").rglob("*_log.err"))
    assert len(submitit_logs) == 3  # three SLURM jobs, their logs under the sweep folder
    assert not any("Traceback" in f.read_text() for f in submitit_logs)
    assert not any("srun` command is available" in f.read_text() for f in submitit_logs)
    for layer in (0, 1, 2):
        views = _report_layers(tmp_path / "ws" / "report" / f"tiny-tagged-layer{layer}")
        assert all(v == {layer} for v in views.values()), views
    assert all(v == {0, 1, 2} for v in _shared_dataset_layers(tmp_path / "ws").values())
    # the same numbers as the local sweep (layers 0 and 2 there)
    for layer in (0, 2):
        mine = pd.read_csv(tmp_path / "ws" / "report" / f"tiny-tagged-layer{layer}" / "probing.csv")
        local = pd.read_csv(joblib_sweep[0] / "ws" / "report" / f"tiny-tagged-layer{layer}" / "probing.csv")
        cols = ["layer", "task", "accuracy", "control_accuracy", "selectivity"]
        pd.testing.assert_frame_equal(mine[cols].sort_values(["task"]).reset_index(drop=True),
                                      local[cols].sort_values(["task"]).reset_index(drop=True))
        (mine_rec,) = [f for f in (tmp_path / "ws").rglob(f"layer_{layer:02d}/concepts-K12.jsonl")]
        (local_rec,) = [f for f in (joblib_sweep[0] / "ws").rglob(f"layer_{layer:02d}/concepts-K12.jsonl")]
        assert mine_rec.read_text() == local_rec.read_text()


# ------------------------------------------------------------------------ a full or read-only disk

def _mount_tmpfs(where: Path, size: str, readonly: bool = False) -> None:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to stand for a small or read-only disk: {r.stderr.strip()}")
    if readonly:
        (where / "ws").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    mounts = []

    def make(size: str, readonly: bool = False) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        _mount_tmpfs(where, size, readonly)
        mounts.append(where)
        return where

    yield make
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_a_read_only_workspace_is_one_line_and_exit_2(tiny_models, text_corpus, small_disk, tmp_path):
    disk = small_disk("1M", readonly=True)
    out = _cli("concepts.extract", ["model=hf", f"model.name_or_path={tiny_models['bert']}", "corpus=text",
                                    f"corpus.path={text_corpus}", f"paths.workspace={disk / 'ws'}"], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(disk / "ws") in lines[0] and "paths.workspace=" in lines[0], lines


def test_a_disk_too_small_for_the_store_is_refused_before_writing(tiny_models, tagged_corpus, small_disk, tmp_path):
    disk = small_disk("32k")
    out = _cli("concepts.extract", ["model=hf", f"model.name_or_path={tiny_models['bert']}", "corpus=ewt",
                                    f"corpus.path={tagged_corpus}", f"paths.workspace={disk / 'ws'}",
                                    "hydra.run.dir=" + str(tmp_path / "logs")], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = [ln for ln in (out.stdout + out.stderr).splitlines() if "activation store needs about" in ln]
    assert str(disk / "ws") in line and "kB are free" in line
    assert not list(disk.rglob("shard-*"))


FILLS_UP = """
import errno, sys
import numpy as np
real_save, calls = np.save, []
def full_disk(path, arr, *a, **k):
    calls.append(path)
    if len(calls) > 1:  # the first layer file fits, the second does not
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real_save(path, arr, *a, **k)
np.save = full_disk
from concepts.extract import main
sys.argv = ["extract", *sys.argv[1:]]
main()
"""


def test_a_disk_that_fills_up_while_writing_leaves_no_partial_shard(tiny_models, text_corpus, tmp_path):
    ws = tmp_path / "ws"
    args = ["model=hf", f"model.name_or_path={tiny_models['bert']}", "corpus=text", f"corpus.path={text_corpus}",
            f"paths.workspace={ws}", "extraction.progress=false"]
    out = subprocess.run([sys.executable, "-c", FILLS_UP, *args], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    (line,) = [ln for ln in (out.stdout + out.stderr).splitlines() if "no space left" in ln]
    assert ".npy" in line and "free there" in line and "run the same command again" in line
    assert not list(ws.rglob("shard-*.tmp*"))  # the half-written shard is gone
    assert not list(ws.rglob("shard-*/meta.json"))  # and nothing a later run would take as finished
    again = _cli("concepts.extract", args, tmp_path)  # the same command resumes
    assert again.returncode == 0, again.stderr[-2000:]
    assert list(ws.rglob("shard-*/meta.json"))
