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


def make_logger(lcfg, save_dir: Path, name: str, group: str, tags: list[str], config: dict):
    """A Lightning logger for one probe, or False."""
    if lcfg.kind == "none":
        return False
    if lcfg.kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(save_dir / "csv"), name=group, version=name)
    from lightning.pytorch.loggers import WandbLogger

    wandb_env(lcfg.mode)
    (save_dir / "wandb").mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=lcfg.project, entity=lcfg.entity, group=group, name=name, tags=tags,
                       save_dir=str(save_dir / "wandb"), config=config, reinit="finish_previous")


def finish(logger, metrics: dict) -> None:
    """Log final metrics and close the run (W&B) or flush (CSV)."""
    if not logger:
        return
    logger.log_metrics(metrics)
    logger.save()
    if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
        logger.experiment.summary.update(metrics)
        logger.experiment.finish()
