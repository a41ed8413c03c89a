"""Fashion-MNIST with L2T-DLN's fast meta-schedule (i20_k5): configs/fashion_mnist.py
with meta.interval=20, meta.unroll_steps=5.

The cheapest schedule that keeps 80 % of the default's gain on every task under label
noise within one standard error (benchmarks/frontier.py: gain + se >= that share of the default's).

Measured on fmnist_mlp_sym40, fmnist_mlp_pair40 (5 seeds, paired with CE by seed):
gain over CE +10.68 +- 0.94 points at 1.44x CE's wall time (fmnist_mlp_sym40 +1.67 +- 0.62 against +2.25, fmnist_mlp_pair40 +19.68 +- 1.77 against +19.92);
the default (interval 10, unroll 10): +11.08 +- 0.92 points at 2.60x.

  benchmarks/frontier.py --out out/frontier --jobs 2 --extra i20_k2:meta.interval=20,meta.unroll_steps=2 --extra i20_k3:meta.interval=20,meta.unroll_steps=3 --extra i20_k5_val100:meta.interval=20,meta.unroll_steps=5,meta.val_batch_size=100 --write_config configs/fashion_mnist_fast.py

  l2t-train --config=configs/fashion_mnist_fast.py:mlp --workdir=runs/fmnist_mlp_fast
"""

import os

from l2t_jax.config import config_file_module


def get_config(student: str = "mlp"):
  here = os.path.dirname(os.path.abspath(__file__))
  config = config_file_module(os.path.join(here, "fashion_mnist.py")).get_config(student)
  config.meta.interval = 20
  config.meta.unroll_steps = 5
  return config
