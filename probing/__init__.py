"""Probing classifiers per layer on concept labels and gold tags, with control tasks."""
