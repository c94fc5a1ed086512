"""runtime.threads: applied to torch and the BLAS pools; a default that does not oversubscribe."""

import pytest
import torch
from helpers import compose_cfg
from omegaconf import OmegaConf
from threadpoolctl import threadpool_info

import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
import concepts.core.runtime as runtime
from concepts.core.config import validate
from concepts.core.errors import UserError
from concepts.extraction.config import ExtractConfig


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    runtime.set_threads(before)


def test_threads_reach_torch_and_blas(restore_threads, tmp_path):
    import numpy as np

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    validate(compose_cfg("extract", [f"paths.workspace={tmp_path}", "runtime.threads=1"]), ExtractConfig)
    assert torch.get_num_threads() == 1
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    with pytest.raises(UserError, match="runtime.threads=0"):
        validate(compose_cfg("extract", [f"paths.workspace={tmp_path}", "runtime.threads=0"]), ExtractConfig)


def test_default_threads_follow_slurm_and_joblib_sweeps(monkeypatch):
    import hydra.core.hydra_config as hc

    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert runtime.default_threads() is None  # no Hydra job, no SLURM: the libraries' default
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    for n_jobs, want in ((4, 4), (-1, 1), (32, 1)):
        fake = OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": {"_target_": joblib, "n_jobs": n_jobs}})
        monkeypatch.setattr(hc.HydraConfig, "get", staticmethod(lambda fake=fake: fake))
        assert runtime.default_threads() == want
    basic = OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": {"_target_": "hydra._internal.core_plugins.BasicLauncher"}})
    monkeypatch.setattr(hc.HydraConfig, "get", staticmethod(lambda: basic))
    assert runtime.default_threads() is None  # jobs one after another: every core
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert runtime.default_threads() == 3


def test_gc_paused_restores_the_collector_as_it_found_it():
    import gc

    import pytest

    from concepts.core.runtime import gc_paused

    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        assert not gc.isenabled()
        raise ValueError("inside")
    assert gc.isenabled()  # back on, even after an error
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
