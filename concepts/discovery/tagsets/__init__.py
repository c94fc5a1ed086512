"""Human-defined tag sets for alignment, one small registered function each.

A tag set function takes the token table (rows = tokens to tag) and returns, per row, a tuple
of tags (usually one; morphological features give several; an empty tuple means untagged, so
a binary property tags only its positive side), None when the table lacks the column it needs, or
a string saying why it cannot run on this machine (a missing resource, with the fix); either way
it is skipped with one line saying why. Add one with:

    @tag_set("my_tags")
    def my_tags(tokens):
        return [("long",) if len(w) > 8 else ("short",) for w in tokens["word"]]
"""

from concepts.discovery.tagsets import builtin, wordnet  # noqa: F401  (register the built-in and WordNet tag sets)
from concepts.discovery.tagsets.registry import (
    TAG_SET_RESOURCES,
    TAG_SETS,
    TagFn,
    compute_tag_sets,
    resource_identity,
    tag_set,
)

__all__ = ["TAG_SETS", "TAG_SET_RESOURCES", "TagFn", "compute_tag_sets", "resource_identity", "tag_set"]
