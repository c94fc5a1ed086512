"""Config helpers every stage uses: the typed-config check (`validate`), plain JSON values of a config,
layer picking, and the sections every app has (`paths`, `runtime`).

The YAML files under `conf/` are merged onto typed dataclasses, one schema per app, each beside its
stage's code (`concepts/<stage>/config.py`, `probing/config.py`, `neurons/config.py`), registered in
Hydra's ConfigStore when imported; a misspelt key or a value of the wrong type is rejected with a
message naming the option. Checks that need more than a type live in `__post_init__`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from concepts.core.errors import UserError


@dataclass
class PathsConfig:
    # root of every stage's outputs; a config built in Python honours $CONCEPTS_WORKSPACE like the YAML
    workspace: str = field(default_factory=lambda: os.environ.get("CONCEPTS_WORKSPACE", "workspace"))

def pick_layers(name: str, value, have: int | list[int]) -> list[int]:
    """The layers an option (`all`, a number or a list) names, of `have` (the layers a store holds,
    or their number): an error naming the option (`name`, a format for one layer, such as
    `"layer={}"`) for a layer the store does not hold."""
    held = list(range(have)) if isinstance(have, int) else list(have)
    layers = held if value == "all" else ([int(value)] if isinstance(value, (int, str)) else [int(x) for x in value])
    bad = [x for x in layers if x not in held]
    if bad:
        if held == list(range(len(held))) or not 0 <= bad[0] <= held[-1]:
            raise UserError(f"{name.format(bad[0])} does not exist; the model has layers 0..{held[-1]} (0 = embeddings)")
        raise UserError(f"{name.format(bad[0])} is not in the store; it has only layers {', '.join(map(str, held))} "
                        "(made with extraction.layers)")
    return layers

@dataclass
class RuntimeConfig:
    threads: int | None = None  # torch/BLAS/faiss threads; null: SLURM's allocation, cores / n_jobs in a joblib sweep, else all

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UserError(f"runtime.threads={self.threads} must be at least 1 (or null for the default)")

def _unknown_keys(node, schema, prefix: str = "") -> list[str]:
    import dataclasses

    from omegaconf import DictConfig

    fields = {f.name: f for f in dataclasses.fields(schema)}
    bad = []
    for key in node.keys():
        if key not in fields:
            bad.append(f"{prefix}{key}")
            continue
        sub = node._get_node(key)
        factory = fields[key].default_factory
        if isinstance(sub, DictConfig) and dataclasses.is_dataclass(factory):
            bad += _unknown_keys(sub, factory, f"{prefix}{key}.")
    return bad

def plain_config(cfg) -> dict:
    """A typed config as plain JSON values (enums by their value), for manifests and W&B."""
    import json
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(cfg), default=lambda o: getattr(o, "value", str(o))))

def validate(cfg, schema):
    """Build the typed config object from a composed config, rejecting unknown options
    (even those added with `+`) and bad values, each with a message naming the option."""
    if isinstance(cfg, schema):
        return cfg
    out = _to_object(cfg, schema)
    from concepts.core.runtime import set_threads

    set_threads(out.runtime.threads)  # every app starts here: its threads are set before any work
    return out

def _to_object(cfg, schema):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"]) if "hydra" in cfg else cfg
    unknown = _unknown_keys(plain, schema)
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(unknown)}; check the spelling against conf/")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except OmegaConfBaseException as e:
        raise UserError(f"bad option: {e}".splitlines()[0]) from None
