"""Packaging step: a gated model becomes a Triton model repository (builder, KFP wrapper, python-backend models)."""
