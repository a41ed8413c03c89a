"""CIFAR-10, DenseNet-BC-100 with growth rate 12 (Huang et al. 2017), L2T-DLN.

Their schedule: SGD with Nesterov momentum 0.9, learning rate 0.1, weight decay 1e-4, batch 64,
300 epochs of 782 steps (234.6k steps), the rate divided by 10 at 50% and 75% of training;
4-pixel pad + random crop + horizontal flip. 5k of the 50k training images are carved off as
validation. Meta-training settings are the project's defaults; the meta-objective uses 1000
validation images per cycle.
"""

from l2t_jax.config import default_config


def get_config():
  c = default_config()
  c.data.name = "cifar10"
  c.data.val_size = 5000
  c.data.augment = True
  c.student.name = "densenet"
  c.student.depth = 100
  c.student.growth_rate = 12
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "piecewise"
  c.optim.boundaries = (117_300, 175_950)
  c.optim.decay_factor = 0.1
  c.train.steps = 234_600
  c.train.batch_size = 64
  c.train.log_every = 500
  c.train.eval_every = 4000
  c.meta.val_batch_size = 1000
  c.checkpoint.every = 4000
  c.parallel.devices = 0  # the batch split over all local devices
  return c
