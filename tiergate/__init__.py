"""tiergate: build, gate and serve a tiered multi-label moderation classifier."""

__version__ = "0.1.0"
