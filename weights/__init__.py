"""Weights: the official manifest, `fetch`, and the deterministic untrained stand-in writer."""
