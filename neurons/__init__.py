"""Neuron ranking by concept salience, and its evaluation (ablation, top-k retraining, overlap)."""
