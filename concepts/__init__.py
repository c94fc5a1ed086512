"""Latent concepts of pre-trained language models: corpus reading, extraction, discovery,
annotation. Downstream packages (`probing`, `neurons`) import from here, never the reverse."""

__version__ = "0.1.0"
