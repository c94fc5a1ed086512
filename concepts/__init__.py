"""Latent concepts of pre-trained language models, one subpackage per stage of the pipeline:

    corpus/       sentences and gold tags from CoNLL-U, text and tables
    extraction/   model loading, subword alignment, the extractor, the activation store
    discovery/    clustering (Ward), tag sets and alignment, concept records, the explorer
    annotation/   LLM labels, label scoring, the concept dataset and its formats
    core/         configuration helpers, artifacts, runtime, errors, secrets, the CLI glue

`python -m concepts.extract|discover|annotate|score` are the thin stage apps; the notebook API
is `latent_concepts.api`. Downstream packages (`probing`, `neurons`) import from here, never the
reverse. Module paths of the earlier flat layout (`concepts.store`, `concepts.records`, ...)
still import: `MOVED` maps them to where the modules live now.
"""

__version__ = "0.1.0"

import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import logging as _logging
import sys as _sys

# faiss's loader logs its probing for CPU instruction sets (with ModuleNotFoundError lines) at INFO
_logging.getLogger("faiss.loader").setLevel(_logging.WARNING)

# module of the flat layout (before the stage subpackages) -> where it lives now
MOVED = {
    "errors": "concepts.core.errors", "artifacts": "concepts.core.artifacts", "runtime": "concepts.core.runtime",
    "secrets": "concepts.core.secrets", "cli": "concepts.core.cli", "confirm": "concepts.core.confirm",
    "locks": "concepts.core.locks", "config": "concepts.core.config",
    "models": "concepts.extraction.models", "subwords": "concepts.extraction.subwords",
    "aggregate": "concepts.extraction.aggregate", "extractor": "concepts.extraction.extractor",
    "store": "concepts.extraction.store", "read_ahead": "concepts.extraction.read_ahead",
    "layer_taps": "concepts.extraction.layer_taps", "estimate": "concepts.extraction.estimate",
    "sampling": "concepts.extraction.sampling",
    "clustering": "concepts.discovery.clustering", "alignment": "concepts.discovery.alignment",
    "tagsets": "concepts.discovery.tagsets", "wordnet_supersenses": "concepts.discovery.tagsets.wordnet",
    "records": "concepts.discovery.records", "explorer": "concepts.discovery.explorer",
    "plots": "concepts.discovery.plots", "formats": "concepts.annotation.formats",
    "api": "latent_concepts.api",
}


def _moved(fullname: str) -> str | None:
    """Where `concepts.<old>` (or a submodule of a moved package) lives now, else None."""
    if not fullname.startswith(__name__ + "."):
        return None
    parts = fullname.split(".")[1:]
    for n in range(len(parts), 0, -1):
        old = ".".join(parts[:n])
        if old in MOVED:
            return ".".join([MOVED[old], *parts[n:]])
    return None


class _Alias(_abc.MetaPathFinder, _abc.Loader):
    """Imports `concepts.<old>` as the module now at `MOVED[old]` (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        return _util.spec_from_loader(fullname, self) if _moved(fullname) else None

    def create_module(self, spec):
        return _importlib.import_module(_moved(spec.name))

    def exec_module(self, module):
        pass


_sys.meta_path.insert(0, _Alias())
