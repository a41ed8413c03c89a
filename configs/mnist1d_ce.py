"""MNIST-1D, MLP student (100-100), cross-entropy at its best constant rate (0.1, from the sweep in
benchmarks/suite.py): the baseline every method of the suite and the comparisons is measured
against. The baselines of benchmarks/suite.py (ce, ce_cosine, label_smoothing, l2t_dlf) start from
this file, so that retuning the L2T-DLN default (configs/mnist1d_mlp.py) leaves them untouched.
"""

from l2t_jax.config import default_config


def get_config():
  config = default_config()
  config.method = "ce"
  config.optim.learning_rate = 0.1
  return config
