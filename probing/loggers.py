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


def run_config(cfg, schema=None, **fingerprints) -> dict:
    """The resolved config of a run as plain values (so the W&B UI filters and groups by any
    option: model, corpus, layer, K, aggregation, label source, probe, ranking...), with the
    fingerprints of its inputs and outputs. `schema` (a config dataclass): keep only its sections, so
    a probe run started by the pipeline does not carry ranking options it never used. The API key
    never is in a config, only its variable's name."""
    from dataclasses import fields

    from concepts.core.config import plain_config

    plain = plain_config(cfg)
    if schema is not None:
        keep = {f.name for f in fields(schema)}
        plain = {k: v for k, v in plain.items() if k in keep}
    return {**plain, "fingerprints": {k: v for k, v in fingerprints.items() if v is not None}}


def _mark(lcfg, root: Path, key: dict) -> Path:
    """The marker of one logged unit in a W&B folder, per project and entity."""
    import hashlib
    import json

    blob = json.dumps({"project": lcfg.project, "entity": lcfg.entity, **key}, sort_keys=True)
    return Path(root) / "logged" / hashlib.sha256(blob.encode()).hexdigest()[:32]


def already_logged(lcfg, root: Path, key: dict) -> bool:
    """Whether a W&B run for `key` (a result's fingerprint and unit) is already in this W&B folder."""
    return _mark(lcfg, root, key).exists()


def mark_logged(lcfg, root: Path, key: dict) -> None:
    """Remember that `key` has its W&B run in this folder (a re-run with nothing new logs nothing)."""
    f = _mark(lcfg, root, key)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.touch()


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


def finish(logger, metrics: dict, text: dict | None = None) -> None:
    """Log final metrics and close the run (W&B) or flush (CSV); `text` (e.g. the flags) goes
    into the W&B run's summary only."""
    if not logger:
        return
    logger.log_metrics(metrics)
    logger.save()
    if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
        logger.experiment.summary.update({**metrics, **(text or {})})
        logger.experiment.finish()
