"""CIFAR-10, WRN-28-10 (Zagoruyko & Komodakis 2016), L2T-DLN.

Their schedule: SGD with Nesterov momentum 0.9, learning rate 0.1, weight decay 5e-4, batch 128,
200 epochs of 390 steps (78k steps), the rate multiplied by 0.2 at epochs 60, 120 and 160; no
dropout; 4-pixel pad + random crop + horizontal flip. 5k of the 50k training images are carved off
as validation. Meta-training settings are the project's defaults; the meta-objective uses 1000
validation images per cycle.
"""

from l2t_jax.config import default_config


def get_config():
  c = default_config()
  c.data.name = "cifar10"
  c.data.val_size = 5000
  c.data.augment = True
  c.student.name = "wrn"
  c.student.depth = 28
  c.student.widen_factor = 10
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "piecewise"
  c.optim.boundaries = (23_400, 46_800, 62_400)
  c.optim.decay_factor = 0.2
  c.train.steps = 78_000
  c.train.batch_size = 128
  c.train.log_every = 500
  c.train.eval_every = 2000
  c.meta.val_batch_size = 1000
  c.checkpoint.every = 2000
  c.parallel.devices = 0  # the batch split over all local devices
  return c
