"""Keeping API keys out of configs, command lines and Hydra's files.

A key belongs in the environment: `export OPENAI_API_KEY=...` and `annotator.api_key_env=OPENAI_API_KEY`
(the NAME of the variable). Before Hydra writes anything (`.hydra/overrides.yaml`, `hydra.yaml`,
`config.yaml`, its log) or prints a config (`--cfg`, `--info`), every command is checked twice:

- `check_argv`: the command line itself, every argument, before Hydra parses it (its errors and
  suggestions echo what they were given);
- `config_problem`: the config Hydra would compose from it, with the same config dir, path and name,
  config group files, experiment presets, sweeps and interpolations (resolved, `${oc.env:...}`
  included).

A value is refused where it looks like a key (`looks_like_secret`: provider formats such as `sk-...`,
`hf_...`, `ghp_...`, `AKIA...`, JWTs, private key blocks, credentials in a URL, a long random token),
where it equals the value of a secret environment variable (`*_API_KEY`, `*_TOKEN`, ...), where its
option names a secret (`names_a_secret`: `api_key`, `*_key`, `token`, `secret`, `password`, ...), and
where `*_key_env` does not hold a variable name (`looks_like_key`). The message is one line naming the
option or the file and key path, and never the value."""

from __future__ import annotations

import os
import re
from pathlib import Path

# ---------------------------------------------------------------- what a secret looks like

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|key|api|hf|gsk|xai|AIza)[-_]", re.IGNORECASE)


def looks_like_key(value: str) -> bool:
    """For `annotator.api_key_env` (which names a variable): a value that is not a plausible variable
    name: not an identifier, a key prefix (sk-...), or long with digits and lower-case letters
    (variable names are upper-case by convention)."""
    if not _NAME.match(value) or _KEY_PREFIX.match(value):
        return True
    return len(value) >= 24 and any(c.isdigit() for c in value) and any(c.islower() for c in value)


# `sk-`/`rk-` keys (OpenAI, Anthropic, Stripe, OpenRouter, DeepSeek, ...): a body of 16+ token characters,
# separators allowed (sk-proj-..., sk-ant-api03-..., sk_live_...), with digits in it
_PREFIXED = re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)[-_]([A-Za-z0-9_\-]{16,})")
# other providers' formats, each its own body (a single run: `hf_dataset_2024_v2` is a name, not a token)
_PROVIDERS = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}"
    r"|gsk_[A-Za-z0-9]{40,}|xai-[A-Za-z0-9]{40,}|glpat-[A-Za-z0-9_\-]{20,}|npm_[A-Za-z0-9]{30,}"
    r"|pypi-[A-Za-z0-9_\-]{50,}|r8_[A-Za-z0-9]{30,}|pplx-[A-Za-z0-9]{40,}|nvapi-[A-Za-z0-9_\-]{40,}"
    r"|xox[abposr]-[0-9A-Za-z\-]{10,})")
_FIXED = re.compile(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key id
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|ya29\.[0-9A-Za-z_\-]{20,}"  # Google OAuth token
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"  # a JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@"  # user:password@ in a URL
    r"|[?&](?i:api[_-]?key|apikey|key|token|access_token|auth|secret|password|sig|signature)=[^&#\s]+"
    r"|\b(?i:bearer)\s+\S*\d\S*")
_RUN = re.compile(r"[A-Za-z0-9]{24,}")


def _random_token(run: str) -> bool:
    """A run of letters and digits with no separators that reads as random (upper, lower and digits,
    changing class often), not a word, a CamelCase name or a hex digest."""
    upper, lower, digit = (sum(f(c) for c in run) for f in (str.isupper, str.islower, str.isdigit))
    if min(upper, lower, digit) < 2:
        return False
    kind = [c.isupper() + 2 * c.isdigit() for c in run]
    changes = sum(a != b for a, b in zip(kind, kind[1:]))
    return changes >= 0.4 * (len(run) - 1)


def looks_like_secret(value: str) -> bool:
    """`value` (any option's value, a command-line argument, a message) holds what looks like an API
    key, a token or a password, alone or inside a longer text."""
    if not isinstance(value, str) or len(value) < 8:
        return False
    for m in _PREFIXED.finditer(value):
        if sum(c.isdigit() for c in m.group(1)) >= 2:
            return True
    if _PROVIDERS.search(value) or _FIXED.search(value):
        return True
    return any(_random_token(r) for r in _RUN.findall(value))


_SECRET_NAMES = {"key", "apikey", "api_key", "token", "secret", "password", "passwd", "passphrase", "credential",
                 "credentials", "auth", "authorization", "bearer"}
_SECRET_ENDINGS = ("_key", "_apikey", "_token", "_secret", "_password", "_passwd", "_passphrase", "_credentials")


def names_a_secret(name: str) -> bool:
    """An option (or variable) name that holds a secret: `api_key`, `key`, `*_key`, `token`, `*_token`,
    `secret`, `password`, ... but not `*_env` (which names the variable that holds it)."""
    n = str(name).rsplit(".", 1)[-1].lower().replace("-", "_")
    if n.endswith("_env"):
        return False
    return n in _SECRET_NAMES or n.endswith(_SECRET_ENDINGS)


def _names_a_key_variable(name: str) -> bool:
    """`api_key_env`, `token_env`, ...: holds the NAME of a variable with a secret."""
    n = str(name).rsplit(".", 1)[-1].lower().replace("-", "_")
    return n.endswith("_env") and names_a_secret(n[:-4])


def _env_secrets() -> list[str]:
    """Values of the secret variables of this environment (`OPENAI_API_KEY`, `HF_TOKEN`, ...): a config
    value holding one (`${oc.env:OPENAI_API_KEY}`, a pasted `$OPENAI_API_KEY`) is a key too."""
    return [v for k, v in os.environ.items()
            if names_a_secret(k) and len(v) >= 12 and "/" not in v and not any(c.isspace() for c in v)]


def _holds_secret(text: str, env: list[str]) -> bool:
    return looks_like_secret(text) or any(v in text for v in env)


def redact(text: str) -> str:
    """`text` with whatever looks like a key (or is a secret variable's value) replaced by `<redacted>`."""
    for v in _env_secrets():
        text = text.replace(v, "<redacted>")
    if not looks_like_secret(text):
        return text
    text = " ".join("<redacted>" if looks_like_secret(w) else w for w in text.split(" "))
    return text if not looks_like_secret(text) else "(a message that would show a secret: not shown)"


# ---------------------------------------------------------------- the messages

FIX = ("keys go in the environment, never in a config or on the command line: run `export OPENAI_API_KEY=...` and "
       "pass annotator.api_key_env=OPENAI_API_KEY (the NAME of an environment variable)")

KEY_ENV_MESSAGE = ("annotator.api_key_env must be the NAME of an environment variable that holds the key (for "
                   "example OPENAI_API_KEY), never the key itself; the value is not shown. Run "
                   "`export OPENAI_API_KEY=...` and pass annotator.api_key_env=OPENAI_API_KEY")


def secret_message(where: str) -> str:
    return f"an API key or password in {where} (not shown; nothing was written): {FIX}"


def not_a_name_message(where: str) -> str:
    return (f"{where} must be the NAME of an environment variable that holds the key, never the key itself "
            f"(the value is not shown; nothing was written): run `export OPENAI_API_KEY=...` and pass "
            f"annotator.api_key_env=OPENAI_API_KEY")


_SHOWABLE = re.compile(r"^[A-Za-z0-9_.\-/@\[\]]+$")


def _showable(name: str) -> bool:
    return bool(_SHOWABLE.match(name)) and not looks_like_secret(name)


# ---------------------------------------------------------------- the command line

_SWEEP_WORDS = {"choice", "glob", "shuffle", "sort", "range", "interval", "tag", "str", "int", "float", "bool",
                "json_str", "null", "reverse"}


def _elements(value: str) -> list[str]:
    """The values an override gives (one, a list or a sweep), roughly: enough to tell names from keys."""
    return [t.strip() for t in re.split(r"[,\[\]()'\"]+", value) if t.strip() and t.strip() not in _SWEEP_WORDS]


def check_argv(argv: list[str]) -> str | None:
    """The error message for a command line that holds a key (in any argument) or gives a secret option a
    value, or passes a key where a variable name belongs; None when it is clean. Hydra has not parsed
    it yet, so nothing is written and nothing is echoed."""
    env = _env_secrets()
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            flag = arg.partition("=")[0]
            shown = f"the command-line flag {flag}" if _showable(flag) else f"command-line argument {i + 1}"
            if names_a_secret(flag.lstrip("-")) or _holds_secret(arg, env):
                return secret_message(shown)
            continue
        key, sep, value = arg.partition("=")
        option = key.lstrip("+~")
        shown = f"the command-line option {option}" if sep and _showable(option) else f"command-line argument {i + 1}"
        if _holds_secret(arg, env):
            return secret_message(shown)
        if not sep:
            continue
        leaf = re.split(r"[./]", option.split("@")[0])[-1]
        if names_a_secret(leaf) and value.strip("'\" "):
            return secret_message(shown)
        if _names_a_key_variable(leaf) and "${" not in value and any(looks_like_key(t) for t in _elements(value)):
            return not_a_name_message(shown)
    return None


# ---------------------------------------------------------------- the composed config

def _hydra_setup(config_name: str, argv: list[str], conf_dir: str, calling_module: str):
    """Hydra's own reading of `argv` (flags, config dir, path and name) and a config loader with the
    search path its app would use; None where Hydra would stop before composing (it reports that)."""
    import contextlib
    import io

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import (
        create_automatic_config_search_path,
        detect_task_name,
        get_args_parser,
    )
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.utils import JobRuntime, setup_globals

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = get_args_parser().parse_args(argv)
        except SystemExit:  # --version, a malformed flag: Hydra's to answer
            return None
    if args.help or args.hydra_help:
        return None
    search_path = create_automatic_config_search_path(None, calling_module, args.config_path or conf_dir)
    if args.config_dir is not None:
        config_dir = os.path.abspath(args.config_dir)
        if not os.path.isdir(config_dir):
            return None
        search_path.prepend(provider="command-line", path=f"file://{config_dir}",
                            anchor=SearchPathQuery(provider="schema"))
    setup_globals()  # the `now` resolver
    JobRuntime().set("name", detect_task_name(None, calling_module))  # as Hydra sets it
    return ConfigLoaderImpl(config_search_path=search_path), args.config_name or config_name, list(args.overrides)


def _variants(loader, overrides: list[str]) -> list[list[str]]:
    """The override lists to compose: the first value of every sweep, then, for a sweep over config group
    options (or with interpolations), each other value in turn."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)  # (globs list options)
    base, alternatives = [], []
    for o in parsed:
        if not o.is_sweep_override():
            base.append(o.input_line)
            continue
        if o.value_type == ValueType.INTERVAL_SWEEP:
            continue
        try:
            values = list(o.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - not enumerable here: left to Hydra (argv was checked)
            continue
        head = o.get_key_element()
        if values:
            base.append(f"{head}={values[0]}")
        group = loader.repository.group_exists(o.key_or_group)
        alternatives += [(len(base) - 1, f"{head}={v}") for v in values[1:] if group or "${" in v]
    return [base] + [base[:i] + [line] + base[i + 1:] for i, line in alternatives]


def _sweeper_variants(loader, cfg, overrides: list[str]) -> list[list[str]]:
    """A preset's own sweep (`hydra.sweeper.params`, e.g. an experiment file) over config group options
    (or with interpolations): each of them in turn. Value sweeps are in the config as text already."""
    params = cfg.hydra.get("sweeper", {}).get("params") or {}
    given = {o.partition("=")[0].lstrip("+~") for o in overrides}
    return [[*overrides, *v] for key, value in params.items()
            if key not in given and value is not None and (loader.repository.group_exists(key) or "${" in str(value))
            for v in _variants(loader, [f"{key}={value}"])]


def _leaves(node, path: tuple):
    """(path, name, raw value, resolved value) of every leaf of a composed config; an interpolation is
    resolved where it can be (`${oc.env:...}` included), else its resolved value is None."""
    from omegaconf import DictConfig, ListConfig

    keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    if not path:  # the app's options first, Hydra's own (which repeat them: overrides, run dir) last
        keys = sorted(keys, key=lambda k: k == "hydra")
    for k in keys:
        child = node._get_node(k)
        if child is None:
            continue
        raw = child._value()
        interpolated = child._is_interpolation()
        if isinstance(child, (DictConfig, ListConfig)) and not interpolated:
            if not child._is_missing() and not child._is_none():
                yield (*path, k), str(k), None, None  # the name alone: a key used as an option name
                yield from _leaves(child, (*path, k))
            continue
        try:
            value = node[k]
        except Exception:  # noqa: BLE001 - unresolvable here (`${hydra:...}`, a missing value)
            value = None
        if isinstance(value, (DictConfig, ListConfig)):
            yield (*path, k), str(k), raw, None
            yield from _leaves(value, (*path, k))
            continue
        yield (*path, k), str(k), raw, value


def _find(cfg, env: list[str]):
    """The leaf of `cfg` holding a secret, (path, name, raw value, kind, by its name alone), or None:
    where it is written, rather than an interpolation that merely repeats it (`hydra.run.dir` holds
    `paths.workspace`), unless an interpolation is its only source (`${oc.env:...}`)."""
    derived = None
    for path, name, raw, value in _leaves(cfg, ()):
        found = None
        if looks_like_secret(name) or any(v in name for v in env):
            found = path[:-1], "", None, "secret", False
        elif any(_holds_secret(t, env) for t in (raw, value) if isinstance(t, str)):
            found = path, name, raw, "secret", False
        elif names_a_secret(name) and value is not None and not isinstance(value, bool) and str(value) not in ("", "???"):
            found = path, name, raw, "secret", True
        elif _names_a_key_variable(name) and isinstance(value, str) and value and looks_like_key(value):
            found = path, name, raw, "not a name", False
        if found and not (isinstance(found[2], str) and "${" in found[2]):
            return found
        derived = derived or found
    return derived


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _source_dirs(cfg) -> list[Path]:
    """The folders of the config sources Hydra used (user folders first, as Hydra searches them)."""
    import importlib.util

    out = []
    for src in cfg.hydra.runtime.get("config_sources") or []:
        path, schema = str(src.path), str(src.schema)
        if schema == "file":
            out.append(Path(path.removeprefix("file://")))
        elif schema == "pkg" and not path.startswith(("hydra.conf", "hydra_plugins")):
            try:
                spec = importlib.util.find_spec(path.replace("/", "."))
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.submodule_search_locations:
                out.append(Path(list(spec.submodule_search_locations)[0]))
    return [d for d in out if d.is_dir()]


def _yaml(folder: Path, name: str) -> Path:
    return folder / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")


def _config_files(cfg, config_name: str) -> list[Path]:
    """The config files the composition read first (the primary config, the chosen group options), then
    every other YAML file of its source folders."""
    dirs = _source_dirs(cfg)
    chosen = [_yaml(d, config_name) for d in dirs]
    for group, option in (cfg.hydra.runtime.get("choices") or {}).items():
        if isinstance(option, str) and not group.startswith("hydra/"):
            chosen += [_yaml(d / group, option) for d in dirs]
    every = [f for d in dirs for f in sorted(d.rglob("*.y*ml"))]
    return [f for f in dict.fromkeys(chosen + every) if f.is_file()]


def _in_file(files: list[Path], test) -> Path | None:
    for f in files:
        try:
            if test(f.read_text(errors="replace")):
                return f
        except OSError:
            continue
    return None


def _file_where(f: Path, key: str, note: str = "") -> str:
    return f"{f if _showable(str(f)) else 'a config file'}, key {key}{note}"


def _where(cfg, config_name: str, overrides: list[str], found) -> str:
    """Where a secret found in the composed config comes from: the command-line option, else the config
    file (primary, a chosen group option, then any in the search path) and its key path."""
    path, name, raw, _, by_name = found
    key = _dotted(path) if _showable(_dotted(path)) else "(a key name)"
    interpolation = isinstance(raw, str) and "${" in raw
    note = " (an interpolation that resolves to a key)" if interpolation else ""
    for o in overrides:
        option = o.partition("=")[0].lstrip("+~")
        if option == _dotted(path) or (interpolation and raw in o):
            return f"the command-line option {option}{note}"
    env = _env_secrets()
    needle = str(raw) if raw is not None and str(raw) else None
    named = re.compile(rf"(?m)^\s*{re.escape(name)}\s*:") if name else None

    def test(text: str) -> bool:
        if by_name:  # `password: ...`: the option, with that value
            return bool(named.search(text)) and (needle is None or needle in text)
        return needle in text if needle else _holds_secret(text, env)  # else a key used as an option name

    f = _in_file(_config_files(cfg, config_name), test)
    return _file_where(f, key, note) if f else f"the composed config, key {key}{note}"


def _error_where(text: str, loader, config_name: str) -> str:
    """Where the key (or the secret option) in a composition error comes from; the error names its
    `full_key`."""
    m = re.search(r"full_key:\s*(\S+)", text)
    key = m.group(1) if m and _showable(m.group(1)) else None
    env = _env_secrets()
    secrets = [w.strip("'\"") for w in re.split(r"\s+", text) if _holds_secret(w, env)]
    named = re.compile(rf"(?m)^\s*{re.escape(key.rsplit('.', 1)[-1])}\s*:") if key else None
    dirs = []
    for element in loader.get_search_path().get_path():
        p = str(element.path)
        if p.startswith(("file://", "/")) and Path(p.removeprefix("file://")).is_dir():
            dirs.append(Path(p.removeprefix("file://")))
    files = [f for d in dirs for f in [_yaml(d, config_name), *sorted(d.rglob("*.y*ml"))] if f.is_file()]
    f = _in_file(list(dict.fromkeys(files)),
                 lambda t: any(s in t for s in secrets) if secrets else bool(named and named.search(t)))
    if f:
        return _file_where(f, key or "(see its error)")
    return f"the config composed from this command line{f', key {key}' if key else ''}"


def config_problem(config_name: str, argv: list[str], conf_dir: str, calling_module: str = "concepts.core.cli") -> str | None:
    """The error message when the config Hydra would compose from `argv` (config dir, path and name,
    group options, presets, sweeps, interpolations) holds a key; None when it is clean or does not
    compose (Hydra, or `concepts.core.cli.config_error`, reports that, and its text is checked here to hold
    no key). Composes in memory: no run folder, no file."""
    env = _env_secrets()
    try:
        setup = _hydra_setup(config_name, argv, conf_dir, calling_module)
        if setup is None:
            return None
        loader, name, overrides = setup
        todo = _variants(loader, overrides)
    except Exception:  # noqa: BLE001 - bad flags or override syntax: Hydra reports them (argv was checked)
        return None
    from hydra.types import RunMode

    seen: set[tuple] = set()
    first = True
    while todo:
        over = todo.pop(0)
        if tuple(over) in seen:
            continue
        seen.add(tuple(over))
        try:
            cfg = loader.load_configuration(config_name=name, overrides=over, run_mode=RunMode.RUN, from_shell=True,
                                            validate_sweep_overrides=False)
        except Exception as e:  # noqa: BLE001
            text, cause = str(e), e.__cause__
            while cause is not None:
                text, cause = f"{text}\n{cause}", cause.__cause__
            named = re.search(r"full_key:\s*(\S+)", text)
            if _holds_secret(text, env) or (named and names_a_secret(named.group(1))):
                return secret_message(_error_where(text, loader, name))
            continue  # Hydra (or config_error) reports it; a sweep's other values may still compose
        found = _find(cfg, env)
        if found:
            where = _where(cfg, name, over, found)
            return not_a_name_message(where) if found[3] == "not a name" else secret_message(where)
        if first:
            first = False
            try:
                todo += _sweeper_variants(loader, cfg, over)
            except Exception:  # noqa: BLE001 - a sweep Hydra will reject itself
                pass
    return None
