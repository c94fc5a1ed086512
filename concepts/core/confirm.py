"""A guard before costly work: a stage about to start something large (a new extraction of many
gigabytes, an LLM annotation that costs money) says what it will do, and where the user set a
limit (`extraction.confirm_above_gb`, `annotation.confirm_above_usd`) it asks before going over
it: a yes at a terminal, else a one-line error that names the option."""

from __future__ import annotations

import logging
import sys

from concepts.core.errors import UserError

log = logging.getLogger(__name__)


def confirm_large(what: str, amount: float, limit: float | None, option: str) -> None:
    """Go on when `limit` is None or `amount <= limit`; above it, ask at a terminal, else stop.

    Raises:
        UserError: above the limit with no terminal to ask, or when the answer is not yes.
    """
    if limit is None or amount <= limit:
        return
    if sys.stdin is not None and sys.stdin.isatty():
        answer = input(f"{what}, above {option}={limit:g}. Go on? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            log.info("confirmed: %s", what)
            return
        raise UserError(f"stopped before starting: {what} (not confirmed)")
    raise UserError(f"stopped before starting: {what}, above {option}={limit:g}; raise {option} "
                    "(or set it to null) to go ahead")
