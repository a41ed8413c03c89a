"""MNIST-1D, small strided 1-D CNN student, L2T-DLN."""

from l2t_jax.config import default_config


def get_config():
  config = default_config()
  config.student.name = "cnn1d"
  return config
