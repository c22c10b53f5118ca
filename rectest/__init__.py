"""rectest: train recommenders on MovieLens and simulate the user-creator dual-influence dynamics."""

__version__ = "0.1.0"
