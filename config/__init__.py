"""The config tree (taxonomy, profiles, regression vectors, generator vocabulary), installed as `tiergate.config`.

This file only makes the folder an importable package so `importlib.resources` can find the
YAML files inside a wheel; see `tiergate.paths.config_dir`. No code lives here.
"""
