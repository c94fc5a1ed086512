"""Threads for every app (`runtime.threads`): torch, the BLAS libraries (through threadpoolctl),
faiss and tokenizers, so that jobs run side by side do not oversubscribe the machine.

The default (`runtime.threads: null`) takes, in order: `$SLURM_CPUS_PER_TASK` (a SLURM job's
allocation, e.g. a submitit sweep); in a Hydra joblib sweep, the cores divided by the launcher's
`n_jobs` (one thread per job when `n_jobs=-1`); else the libraries' own default (every core).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
_applied: dict = {"threads": None, "limiter": None}


def default_threads() -> int | None:
    """The thread count to use when `runtime.threads` is null; None leaves the libraries' default."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):  # not inside a Hydra job
        return None
    launcher = hc.launcher if "launcher" in hc else None
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if str(hc.mode) != "RunMode.MULTIRUN" or "joblib" not in target.lower():
        return None
    cores = os.cpu_count() or 1
    n_jobs = int(launcher.get("n_jobs", -1) or -1)
    n_jobs = cores if n_jobs < 0 else n_jobs
    return max(1, cores // max(n_jobs, 1))


def set_threads(threads: int | None) -> int | None:
    """Apply a thread count to torch, BLAS/OpenMP (threadpoolctl), faiss and tokenizers (and to the
    environment, for child processes). None: `default_threads()`. Returns the count applied
    (None: nothing changed). Calling again with the same count does nothing."""
    n = threads if threads is not None else default_threads()
    if n is None or n == _applied["threads"]:
        return n
    if n < 1:
        from concepts.core.errors import UserError

        raise UserError(f"runtime.threads={n} must be at least 1 (or null for the default)")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    _applied["limiter"] = threadpool_limits(limits=n)  # BLAS and OpenMP pools already loaded
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)  # pools loaded later, and child processes
    if n == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    _applied["threads"] = n
    log.info("threads: %d (runtime.threads%s)", n, "" if threads is not None else "=null: " + _why())
    return n


def _why() -> str:
    return "SLURM_CPUS_PER_TASK" if os.environ.get("SLURM_CPUS_PER_TASK") else "joblib sweep: cores / n_jobs"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (reference counting still frees): for building many
    objects without cycles that stay alive, such as a held corpus or a layer's concept records, where
    each automatic collection walks everything built so far (a fifth of loading EWT)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
