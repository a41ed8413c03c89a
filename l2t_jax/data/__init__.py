"""Datasets as in-memory splits, and the deterministic batch order drawn from them."""

from l2t_jax.data.dataset import Dataset, Split, load_dataset
from l2t_jax.data.errors import DataError
from l2t_jax.data.sampler import batch_indices, eval_batches

__all__ = ["DataError", "Dataset", "Split", "load_dataset", "batch_indices", "eval_batches"]
