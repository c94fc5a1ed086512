"""Stage 2, discovery: latent concepts per layer (Ward clustering), aligned with human-defined
tag sets; concept records, the explorer page and the alignment plots."""
