"""The tag set registry: `@tag_set(name)` registers a function; `compute_tag_sets` runs them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

log = logging.getLogger(__name__)

TagFn = Callable[[pd.DataFrame], "list[tuple[str, ...]] | str | None"]
TAG_SETS: dict[str, TagFn] = {}
# tag sets that read a resource outside the corpus: name -> a function giving the resource's
# identity (None when it is missing), so that installing or removing it names new concepts folders
TAG_SET_RESOURCES: dict[str, Callable[[], object]] = {}


def tag_set(name: str, resource: Callable[[], object] | None = None):
    def deco(fn: TagFn) -> TagFn:
        TAG_SETS[name] = fn
        if resource is not None:
            TAG_SET_RESOURCES[name] = resource
        return fn
    return deco


def resource_identity(names: list[str]) -> dict[str, object]:
    """The identity of the outside resources the named tag sets read ({} when none reads one):
    whether each is installed, and which version (e.g. WordNet's files)."""
    return {n: TAG_SET_RESOURCES[n]() for n in names if n in TAG_SET_RESOURCES}


def compute_tag_sets(tokens: pd.DataFrame, names: list[str]) -> dict[str, list[tuple[str, ...]]]:
    """Run the named tag sets; those the table cannot support are skipped with a message."""
    out = {}
    for name in names:
        if name not in TAG_SETS:
            from concepts.core.errors import UserError

            raise UserError(f"unknown tag set {name!r} (discovery.tag_sets); known: {', '.join(sorted(TAG_SETS))}")
        tags = TAG_SETS[name](tokens)
        if tags is None or isinstance(tags, str):  # a str says why the tag set cannot run here
            log.info("tag set %s skipped: %s", name, tags or "the corpus has no such column")
            continue
        out[name] = tags
    return out


