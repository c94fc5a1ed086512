"""What every command-line app shares: Hydra entry, clean errors, the `model=` shortcut."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from concepts.core.errors import UserError
from concepts.core.secrets import check_argv, config_problem, redact

# the top-level conf/, through the link concepts/conf (a checkout) or as package data (a wheel)
CONF_DIR = str((Path(__file__).parent.parent / "conf").resolve())
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
    neither, close to a name in `conf/model/` and not in the local Hub cache, is a `UserError` with a
    "did you mean" before any Hub call (`model=hf model.name_or_path=<it>` loads a Hub model of that
    name all the same); with the Hub off (HF_HUB_OFFLINE=1) and the model not in the local cache it is
    a `UserError` at once."""
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
                if not local and close and not _in_hub_cache(value):  # a typo of a config, most likely: no Hub call
                    raise UserError(
                        f"model={value} is not a config of conf/model/ nor a local folder (for a Hugging Face Hub model "
                        f"of that name: model=hf model.name_or_path={value}); did you mean model={close[0]}?")
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
    if about.startswith("`python -m ") and not command.startswith("python -m "):
        about = f"`{command}`" + about.split("`", 2)[2]
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


_COMPOSED: dict | None = None  # within one command's start-up checks: (name, overrides) -> config or error


def _compose(config_name: str, overrides: list[str]):
    """`compose` of the packaged configs; during a command's start-up checks (`hydra_entry`) each
    composition is made once, as `config_error` and `workspace_problem` ask for the same one."""
    from hydra import compose, initialize_config_dir

    key = (config_name, tuple(overrides))
    if _COMPOSED is not None and key in _COMPOSED:
        if isinstance(_COMPOSED[key], Exception):
            raise _COMPOSED[key]
        return _COMPOSED[key]
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as e:
        if _COMPOSED is not None:
            _COMPOSED[key] = e
        raise
    if _COMPOSED is not None:
        _COMPOSED[key] = cfg
    return cfg


def config_error(config_name: str, argv: list[str]) -> str | None:
    """One line for a config error that Hydra would otherwise report itself in several lines with
    exit status 1 (an unknown key, a value of the wrong type, a missing option, bad override
    syntax), by composing the config before Hydra runs. Multirun and flag invocations are left
    to Hydra."""
    if any(a.startswith("-") for a in argv):
        return None
    overrides = [a for a in argv if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        if any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(overrides)):
            return None  # a sweep (a preset may set hydra.mode=MULTIRUN): Hydra's to expand
        _compose(config_name, overrides)
    except Exception as e:  # noqa: BLE001 - any composition error becomes the one line
        keep = [ln.strip() for ln in str(e).splitlines()
                if ln.strip() and not ln.strip().startswith(("Config search path", "provider=", "See https"))]
        if any(ln.startswith("Available options") for ln in keep):
            i = next(i for i, ln in enumerate(keep) if ln.startswith("Available options"))
            keep = keep[:i] + [keep[i] + " " + ", ".join(keep[i + 1:])]
        cause = str(e.__cause__).splitlines()[0] if e.__cause__ is not None and str(e.__cause__) else ""
        unknown = _unknown_key(config_name, overrides, " ".join(keep))
        if unknown is not None:
            return redact(unknown)
        return redact("; ".join(keep + ([cause] if cause else [])) + " (see --help)")  # never a key
    return None


def _unknown_key(config_name: str, overrides: list[str], message: str) -> str | None:
    """For Hydra's "Could not override 'a.bb'" (an option this command does not have): one line
    that names the closest existing option (`did you mean a.b?`), instead of Hydra's advice to add
    the key with `+a.bb`."""
    import difflib
    import re

    from omegaconf import OmegaConf

    m = re.search(r"Could not override '([^']+)'", message)
    if m is None:
        return None
    key = m.group(1)
    rest = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
    try:
        cfg = _compose(config_name, rest)
    except Exception:  # noqa: BLE001 - another error as well: Hydra's message stands
        return None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if node is None or not OmegaConf.is_config(node) or OmegaConf.is_list(node):
        top = key.split(".")[0]
        close = difflib.get_close_matches(top, [str(k) for k in cfg.keys()], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{key}: this command has no option {top} (see --help for its options){hint}"
    options = [str(k) for k in node.keys()]
    close = difflib.get_close_matches(leaf, options, n=1, cutoff=0.5)
    where = f"{parent}." if parent else ""
    hint = f"; did you mean {where}{close[0]}?" if close else ""
    which = f"the options of {parent}" if parent else "the top-level options"
    return f"{key} is not an option (see --help; {which}: {', '.join(options)}){hint}"


def workspace_problem(config_name: str, argv: list[str]) -> str | None:
    """One line when the workspace cannot be written (a read-only file system, no permission, a full
    disk), checked before Hydra makes its log folder there (which would fail with a traceback)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
        cfg = _compose(config_name, overrides)
        workspace = Path(str(OmegaConf.select(cfg, "paths.workspace"))).expanduser()
    except Exception:  # noqa: BLE001 - composition errors are config_error's (or Hydra's) to report
        return None
    return writable_problem(workspace, "paths.workspace")


def writable_problem(folder: Path, option: str) -> str | None:
    """Why `folder` (made if missing) cannot take new files, or None."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = f"set {option}=<a writable folder with free space>"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {folder}: {existing} is read-only or not yours (no write permission); {fix}"
    try:
        probe = existing / f".write-test-{os.getpid()}-{secrets.token_hex(3)}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        return f"cannot write in {folder}: {disk_error_text(e)}; {fix}"
    return None


def human_seconds(s: float) -> str:
    """3.2 s, 75 s, 12 min 5 s, 2 h 03 min."""
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as `df -H` prints them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} TB"


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error_text(e: OSError, needed_bytes: int | None = None) -> str:
    """A full disk, a quota, a read-only file system or a permission problem, in one phrase."""
    where = e.filename or "the workspace"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            at = Path(where).absolute() if e.filename else Path.cwd()
            free = shutil.disk_usage(next(p for p in (at, *at.parents) if p.exists())).free
        except OSError:
            free = None
        need = f", about {human_bytes(needed_bytes)} more needed" if needed_bytes else ""
        have = f" ({human_bytes(free)} free there{need})" if free is not None else need
        kind = "disk quota exceeded" if e.errno == errno.EDQUOT else "no space left on the device"
        return f"{kind} writing {where}{have}"
    if e.errno == errno.EROFS:
        return f"read-only file system: cannot write {where}"
    return f"no permission to write {where}"


def _exit_user_error(message: str) -> None:
    """A user error found before Hydra runs: one line, exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.error("%s", message)
    sys.exit(2)


_STAMP: list[str] = []


def invocation_stamp() -> str:
    """One id per command (or per process using the Python API): `$CONCEPTS_RUN_STAMP` when set
    (a command sets it for its multirun jobs, started by joblib or SLURM in another second, so they
    share one sweep folder), else the time and a random suffix, made once per process. It names a
    command's log folder and its W&B group; the suffix keeps two commands started in the same second
    apart."""
    stamp = os.environ.get("CONCEPTS_RUN_STAMP")
    if stamp:
        return stamp
    if not _STAMP:
        _STAMP.append(f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{secrets.token_hex(3)}")
    return _STAMP[0]


def hydra_entry(config_name: str, run: Callable[[DictConfig], object],
                on_result: Callable[[Path, object], None] | None = None) -> Callable[[], None]:
    """A console entry point: Hydra config `config_name`, then `run(cfg)` (and
    `on_result(job_dir, result)` with the Hydra job's output folder, where sweep summaries look). A `UserError` is logged as one line and exits with status 2,
    without a traceback."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def _task(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        job = HydraConfig.get().job
        # one line when the stage starts and one when it ends (a multirun job says which)
        multirun = HydraConfig.get().mode is not None and HydraConfig.get().mode.name == "MULTIRUN"
        name = config_name + (f" (job {job.num})" if multirun and job.get("num") is not None else "")
        started = time.perf_counter()
        log.info("%s: started", name)
        try:
            result = run(cfg)
            if on_result is not None:
                on_result(Path(HydraConfig.get().runtime.output_dir), result)
            log.info("%s: finished in %s", name, human_seconds(time.perf_counter() - started))
        except UserError as e:
            log.error("%s", e)
            sys.exit(2)
        except OSError as e:
            if e.errno not in DISK_ERRNOS:
                raise
            # what was being written is a temp file (atomic writes) and is gone or named as one;
            # a later run trusts only finished files
            log.error("%s; free space (or set paths.workspace=<another disk>) and run the same command "
                      "again: it resumes from what is finished", disk_error_text(e))
            sys.exit(2)

    def main() -> None:
        # one timestamp per command: multirun jobs started by joblib or submitit in another
        # second would otherwise resolve ${now:...} into different sweep folders
        os.environ["CONCEPTS_RUN_STAMP"] = invocation_stamp()
        # an API key on the command line: refused before Hydra parses it (its errors echo it) or saves it
        problem = check_argv(sys.argv[1:])
        if problem:
            _exit_user_error(problem)
        if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
            module = sys.modules.get(run.__module__)  # the stage: its docstring describes it
            # the command as started: `python -m concepts.extract` (the thin app), or a console
            # script (concepts-extract) named as typed
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            typed = Path(sys.argv[0]).name
            command = (typed if typed and not typed.endswith(".py") and "python" not in typed
                       else f"python -m {spec.name if spec else run.__module__}")
            sys.stdout.write(app_help(config_name, getattr(module, "__doc__", None), command))
            return
        try:
            sys.argv = [sys.argv[0], *name_corpus_by_path(rewrite_model_shortcut(sys.argv[1:]))]
        except UserError as e:
            _exit_user_error(str(e))
        # an API key in a config file, a preset or behind an interpolation: refused before Hydra
        # composes the config itself (and prints it, or writes it into .hydra/)
        problem = config_problem(config_name, sys.argv[1:], CONF_DIR, calling_module=__name__)
        if problem:
            _exit_user_error(problem)
        global _COMPOSED
        _COMPOSED = {}
        try:
            problem = config_error(config_name, sys.argv[1:]) or workspace_problem(config_name, sys.argv[1:])
        finally:
            _COMPOSED = None
        if problem:
            _exit_user_error(problem)
        _task()

    return main
