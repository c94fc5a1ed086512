"""Stage 1, extraction: a corpus and a model in, an activation store out (model loading,
subword alignment, aggregation, the extractor, the store, read-ahead, the sampled store)."""
