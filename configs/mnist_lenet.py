"""MNIST, LeNet-5, L2T-DLN: LeNet-5 with ReLU and max pooling.

Schedule (ours; the paper's text we have does not give it): SGD with momentum 0.9, learning rate
0.05, weight decay 5e-4, batch 128, 20k steps (about 46 epochs of the 55k training images left
after the 5k validation carve-out), the rate divided by 10 at 10k and 15k steps. Meta-training
settings are the project's defaults (K = 10 unrolled steps per cycle of 10, teacher update every
5 DLN updates); the meta-objective uses 1000 validation examples per cycle.
"""

from l2t_jax.config import default_config


def get_config():
  c = default_config()
  c.data.name = "mnist"
  c.data.val_size = 5000
  c.student.name = "lenet5"
  c.optim.learning_rate = 0.05
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "piecewise"
  c.optim.boundaries = (10_000, 15_000)
  c.train.steps = 20_000
  c.train.batch_size = 128
  c.train.log_every = 500
  c.train.eval_every = 2000
  c.meta.val_batch_size = 1000
  c.checkpoint.every = 2000
  c.parallel.devices = 0  # the batch split over all local devices
  return c
