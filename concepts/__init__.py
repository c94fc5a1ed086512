"""Latent concepts of pre-trained language models: corpus reading, extraction, discovery,
annotation. Downstream packages (`probing`, `neurons`) import from here, never the reverse."""

__version__ = "0.1.0"

import logging as _logging

# faiss's loader logs its probing for CPU instruction sets (with ModuleNotFoundError lines) at INFO
_logging.getLogger("faiss.loader").setLevel(_logging.WARNING)
