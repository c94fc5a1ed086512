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

# the top-level conf/, through the link concepts/conf (a checkout) or as package data (a wheel)
CONF_DIR = str((Path(__file__).parent / "conf").resolve())
log = logging.getLogger("concepts")


def model_slug(name_or_path: str) -> str:
    """A folder-safe short name for a model id or path."""
    text = name_or_path.split(":", 1)[-1].rstrip("/")
    parts = Path(text).parts
    text = "--".join(parts[-2:]) if len(parts) > 1 and not Path(text).exists() else Path(text).name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text) or "model"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a valid repo id, or no cache: not there
        return False


def rewrite_model_shortcut(argv: list[str]) -> list[str]:
    """`model=<hub id or path>` that is not a file of `conf/model/` becomes
    `model=hf model.name_or_path=<it>`, so any model loads by name or path. A value that is
    neither, close to a name in `conf/model/`, gets a "did you mean" before any Hub call; with
    the Hub off (HF_HUB_OFFLINE=1) and the model not in the local cache it is a `UserError` at once."""
    import difflib

    known = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
    out = []
    for arg in argv:
        if arg.startswith("model=") and "," not in arg:
            value = arg.split("=", 1)[1]
            if value not in known:
                # a path (existing or not) is left to the model loader, which names what is missing
                local = (value.startswith(("embedded:", "/", "~", ".")) or value.count("/") > 1
                         or Path(value).expanduser().exists())
                close = difflib.get_close_matches(value, known, n=1, cutoff=0.75)
                hint = f" (did you mean model={close[0]}?)" if close else ""
                if not local and hub_offline() and not _in_hub_cache(value):
                    raise UserError(
                        f"model={value} is not a config of conf/model/ ({', '.join(known)}) nor a local folder, and "
                        f"the Hugging Face Hub is off (HF_HUB_OFFLINE=1) with no cached copy{hint}")
                if not local and close:
                    sys.stderr.write(f"model={value} is not a config of conf/model/ nor a local folder: loading it "
                                     f"from the Hugging Face Hub{hint}\n")
                out += ["model=hf", f"model.name_or_path={value}", f"model.name={model_slug(value)}"]
                continue
        out.append(arg)
    return out


def app_help(config_name: str, doc: str | None, command: str) -> str:
    """The `--help` of one app: what it does (its module's first paragraph), the config groups it
    uses with their options and defaults, and where to see every option."""
    from omegaconf import OmegaConf

    conf = Path(CONF_DIR)
    defaults = OmegaConf.to_container(OmegaConf.load(conf / f"{config_name}.yaml")).get("defaults", [])
    about = (doc or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [about if about.startswith("`") else f"{command}: {about}", "",
             f"Usage: {command} [group=option ...] [key=value ...]    (a sweep: -m key=a,b,c)", "",
             "Config groups this command uses (option in use first):"]
    for entry in defaults:
        if not isinstance(entry, dict):
            continue
        (group, default), = entry.items()
        group = group.removeprefix("optional ")
        options = sorted(p.stem for p in (conf / group).glob("*.yaml")) if (conf / group).is_dir() else []
        if not options:
            continue
        extra = "  (or any Hugging Face id or local folder)" if group == "model" else ""
        others = [o for o in options if o != default]
        shown = " | ".join(([default] if default in options else ["(none)"]) + others)
        lines.append(f"  {group:<11} {shown}{extra}")
    lines += ["", "Every option with its value: --cfg job (one group: --cfg job --package <group>).",
              "Hydra's own flags (multirun, launchers, completion): --hydra-help.", ""]
    return "\n".join(lines)


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


def _exit_user_error(message: str) -> None:
    """A user error found before Hydra runs: one line, exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.error("%s", message)
    sys.exit(2)


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
            _exit_user_error(problem)
        if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
            module = sys.modules.get(run.__module__)
            spec = getattr(module, "__spec__", None)
            command = f"python -m {spec.name if spec else run.__module__}"
            sys.stdout.write(app_help(config_name, getattr(module, "__doc__", None), command))
            return
        try:
            sys.argv = [sys.argv[0], *name_corpus_by_path(rewrite_model_shortcut(sys.argv[1:]))]
        except UserError as e:
            _exit_user_error(str(e))
        problem = config_error(config_name, sys.argv[1:])
        if problem:
            _exit_user_error(problem)
        _task()

    return main
