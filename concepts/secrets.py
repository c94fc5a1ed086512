"""Keeping API keys out of configs: `annotator.api_key_env` must hold the NAME of an
environment variable. A value that is not a valid variable name, or that looks like a key,
is refused before Hydra writes any file (`.hydra/overrides.yaml`, `config.yaml`), and it is
never echoed."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|key|api|hf|gsk|xai|AIza)[-_]", re.IGNORECASE)


def looks_like_key(value: str) -> bool:
    """A value that is not a plausible variable name: not an identifier, a key prefix (sk-...),
    or long with digits and lower-case letters (variable names are upper-case by convention)."""
    if not _NAME.match(value) or _KEY_PREFIX.match(value):
        return True
    return len(value) >= 24 and any(c.isdigit() for c in value) and any(c.islower() for c in value)


KEY_ENV_MESSAGE = ("annotator.api_key_env must be the NAME of an environment variable that holds the key (for "
                   "example OPENAI_API_KEY), never the key itself; the value given was not shown or saved. Run "
                   "`export OPENAI_API_KEY=...` and pass annotator.api_key_env=OPENAI_API_KEY")


def check_argv(argv: list[str]) -> str | None:
    """The error message for a command line that passes a key where a variable name belongs."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "annotator.api_key_env" and value and looks_like_key(value):
            return KEY_ENV_MESSAGE
    return None
