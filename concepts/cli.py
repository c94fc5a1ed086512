"""What every command-line app shares: Hydra entry, clean errors, the `model=` shortcut."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from concepts.errors import UserError
from concepts.secrets import check_argv

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("concepts")


def model_slug(name_or_path: str) -> str:
    """A folder-safe short name for a model id or path."""
    text = name_or_path.split(":", 1)[-1].rstrip("/")
    parts = Path(text).parts
    text = "--".join(parts[-2:]) if len(parts) > 1 and not Path(text).exists() else Path(text).name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text) or "model"


def rewrite_model_shortcut(argv: list[str]) -> list[str]:
    """`model=<hub id or path>` that is not a file of `conf/model/` becomes
    `model=hf model.name_or_path=<it>`, so any model loads by name or path."""
    known = {p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml")}
    out = []
    for arg in argv:
        if arg.startswith("model=") and "," not in arg:
            value = arg.split("=", 1)[1]
            if value not in known:
                out += ["model=hf", f"model.name_or_path={value}", f"model.name={model_slug(value)}"]
                continue
        out.append(arg)
    return out


def name_corpus_by_path(argv: list[str]) -> list[str]:
    """`corpus.path=<file or folder>` without `corpus.name=` also sets `corpus.name` from the
    path (file stem or folder name), so folder names and titles tell corpora apart."""
    paths = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("corpus.path=")]
    named = any(a.lstrip("+").startswith("corpus.name=") for a in argv)
    if named or len(paths) != 1 or "," in paths[0] or not paths[0]:
        return argv
    p = Path(paths[0].rstrip("/"))
    stem = p.stem if p.suffix else p.name
    return [*argv, f"corpus.name={model_slug(stem) if stem else 'corpus'}"]


def config_error(config_name: str, argv: list[str]) -> str | None:
    """One line for a config error that Hydra would otherwise report itself in several lines with
    exit status 1 (an unknown key, a value of the wrong type, a missing option, bad override
    syntax), by composing the config before Hydra runs. Multirun and flag invocations are left
    to Hydra."""
    if any(a.startswith("-") for a in argv):
        return None
    overrides = [a for a in argv if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        if any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(overrides)):
            return None  # a sweep (a preset may set hydra.mode=MULTIRUN): Hydra's to expand
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            compose(config_name=config_name, overrides=overrides)
    except Exception as e:  # noqa: BLE001 - any composition error becomes the one line
        keep = [ln.strip() for ln in str(e).splitlines()
                if ln.strip() and not ln.strip().startswith(("Config search path", "provider=", "See https"))]
        if any(ln.startswith("Available options") for ln in keep):
            i = next(i for i, ln in enumerate(keep) if ln.startswith("Available options"))
            keep = keep[:i] + [keep[i] + " " + ", ".join(keep[i + 1:])]
        cause = str(e.__cause__).splitlines()[0] if e.__cause__ is not None and str(e.__cause__) else ""
        return "; ".join(keep + ([cause] if cause else [])) + " (see --help)"
    return None


def hydra_entry(config_name: str, run: Callable[[DictConfig], object],
                on_result: Callable[[Path, object], None] | None = None) -> Callable[[], None]:
    """A console entry point: Hydra config `config_name`, then `run(cfg)` (and
    `on_result(job_dir, result)` with the Hydra job's output folder, where sweep summaries look). A `UserError` is logged as one line and exits with status 2,
    without a traceback."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def _task(cfg: DictConfig) -> None:
        try:
            result = run(cfg)
            if on_result is not None:
                from hydra.core.hydra_config import HydraConfig

                on_result(Path(HydraConfig.get().runtime.output_dir), result)
        except UserError as e:
            log.error("%s", e)
            sys.exit(2)

    def main() -> None:
        # one timestamp per command: multirun jobs started by joblib or submitit in another
        # second would otherwise resolve ${now:...} into different sweep folders
        os.environ.setdefault("CONCEPTS_RUN_STAMP", time.strftime("%Y-%m-%d_%H-%M-%S"))
        problem = check_argv(sys.argv[1:])  # before Hydra saves the overrides anywhere
        if problem:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            log.error("%s", problem)
            sys.exit(2)
        sys.argv = [sys.argv[0], *name_corpus_by_path(rewrite_model_shortcut(sys.argv[1:]))]
        problem = config_error(config_name, sys.argv[1:])
        if problem:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            log.error("%s", problem)
            sys.exit(2)
        _task()

    return main
