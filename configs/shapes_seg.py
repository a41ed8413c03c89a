"""Shapes scenes, DeepLab-v3 style student on a small ResNet, L2T-DLN: segmentation on a laptop CPU.

The DLN scores every pixel's class items (the 1-vs-1 transformation per pixel); pixels on object
outlines carry the ignore label 255 and count in neither the loss nor the metric.
`--config.method=ce` trains on per-pixel cross-entropy. Evaluation reports the mean IoU (background
and the four shapes) as the accuracy, pixel accuracy beside it. ResNet-18 is
`--config.student.stage_blocks='()' --config.student.base_width=0`.
"""

from l2t_jax.config import default_config


def get_config():
  config = default_config()
  config.data.name = "shapes_segmentation"
  config.data.image_size = 64
  config.data.shapes_train_size = 2000
  config.data.shapes_test_size = 500
  config.data.val_size = 200
  config.student.name = "deeplab"
  config.student.stage_blocks = (1, 1, 1, 1)
  config.student.base_width = 8
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.schedule = "cosine"
  config.optim.warmup_steps = 100
  config.train.steps = 1500
  config.train.batch_size = 16
  config.train.eval_every = 500
  config.train.log_every = 100
  config.train.eval_batch_size = 100
  config.meta.unroll_steps = 5
  config.meta.interval = 10
  config.meta.val_batch_size = 50
  return config
