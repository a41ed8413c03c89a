"""MNIST-1D, MLP student (100-100), L2T-DLN: the default experiment."""

from l2t_jax.config import default_config


def get_config():
  return default_config()
