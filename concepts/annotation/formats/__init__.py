"""Interchange formats: the Transformers ConceptNet layout and ConceptX cluster files."""
