"""CIFAR-100, ResNet-8 (He et al. 2016, CIFAR variant), L2T-DLN.

The standard schedule of He et al.: SGD with momentum 0.9, learning rate 0.1, weight decay 1e-4,
batch 128, 64k steps, the rate divided by 10 at 32k and 48k; 4-pixel pad + random crop +
horizontal flip. 5k of the 50k training images are carved off as validation. Meta-training
settings are the project's defaults; the meta-objective uses 1000 validation images per cycle.
"""

from l2t_jax.config import default_config


def get_config():
  c = default_config()
  c.data.name = "cifar100"
  c.data.val_size = 5000
  c.data.augment = True
  c.student.name = "resnet"
  c.student.depth = 8
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "piecewise"
  c.optim.boundaries = (32_000, 48_000)
  c.optim.decay_factor = 0.1
  c.train.steps = 64_000
  c.train.batch_size = 128
  c.train.log_every = 500
  c.train.eval_every = 2000
  c.meta.val_batch_size = 1000
  c.checkpoint.every = 2000
  c.parallel.devices = 0  # the batch split over all local devices
  return c
