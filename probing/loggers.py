"""Experiment loggers for probes: none, Lightning's CSVLogger, or W&B (offline unless the user
asks for online; no account needed)."""

from __future__ import annotations

import os
from pathlib import Path


def wandb_env(mode: str | None) -> None:
    """Offline by default: an explicit `logger.mode` wins, then $WANDB_MODE, then offline."""
    if mode:
        os.environ["WANDB_MODE"] = mode
    else:
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def wandb_root(cfg) -> Path:
    """One folder for every W&B run of a workspace (probes, rankings, pipeline summaries), so one
    `wandb sync <root>/wandb/offline-run-*` uploads them all."""
    return Path(cfg.paths.workspace) / "wandb"


def run_config(cfg, **fingerprints) -> dict:
    """The full resolved config of a run as plain values (so the W&B UI filters and groups by any
    option: model, corpus, layer, K, aggregation, label source, probe, ranking...), with the
    fingerprints of its inputs and outputs. The API key never is in a config, only its variable's name."""
    from concepts.config import plain_config

    return {**plain_config(cfg), "fingerprints": {k: v for k, v in fingerprints.items() if v is not None}}


def start_run(lcfg, root: Path, name: str, group: str, job_type: str, tags: list[str], config: dict):
    """A W&B run in `root` (offline unless told otherwise); the caller finishes it."""
    import wandb

    wandb_env(lcfg.mode)
    root.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=lcfg.project, entity=lcfg.entity, group=group, name=name, job_type=job_type, tags=tags,
                      dir=str(root), config=config, reinit="finish_previous")


def make_logger(lcfg, save_dir: Path, name: str, group: str, tags: list[str], config: dict,
                wandb_dir: Path | None = None):
    """A Lightning logger for one probe, or False (CSV files under `save_dir`; W&B runs under
    `wandb_dir`, default `save_dir/wandb`)."""
    if lcfg.kind == "none":
        return False
    if lcfg.kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(save_dir / "csv"), name=group, version=name)
    from lightning.pytorch.loggers import WandbLogger

    # the run is made here and handed over: Lightning's own init passes settings W&B warns about
    run = start_run(lcfg, wandb_dir or save_dir / "wandb", name, group, "probe", tags, config)
    return WandbLogger(experiment=run)


def finish(logger, metrics: dict) -> None:
    """Log final metrics and close the run (W&B) or flush (CSV)."""
    if not logger:
        return
    logger.log_metrics(metrics)
    logger.save()
    if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
        logger.experiment.summary.update(metrics)
        logger.experiment.finish()
