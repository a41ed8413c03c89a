"""The error a dataset loader raises when its data cannot be read here.

A module of its own, below the loaders (`tfds`, `digits`) and `dataset`, which dispatches to them,
so that the imports run one way.
"""

from __future__ import annotations


class DataError(RuntimeError):
  """A dataset that cannot be read here; the message says how to make it available."""
