"""PASCAL VOC 2012 segmentation, DeepLab-v3 style student (dilated ResNet-18, output stride 8,
ASPP), L2T-DLN.

Data: VOC 2012's `train` list for training (the last 200 images carved off as the teacher's
validation split) and its `val` list for testing, read from the VOCdevkit folder under
--config.data.data_dir (l2t_jax/data/voc.py; TFDS has no VOC segmentation dataset). Every image
lies at its own resolution on a 512-pixel canvas padded with the mean colour and the ignore label,
so the mean IoU (21 classes, the 255 "void" pixels excluded) is measured at full resolution. The DLN
scores every pixel's class items (the 1-vs-1 transformation of the supplement, section 2).
`--config.method=ce` is per-pixel cross-entropy.

Schedule: DeepLab-v3's recipe where the supplement here gives none: SGD, momentum 0.9, weight
decay 1e-4, learning rate 7e-3 (cosine decay in place of DeepLab's "poly"), batch 16, 30,000
steps, augmentation by a random zoom in [0.5, 2], shift and horizontal flip with the masks. The
backbone starts from scratch (no ImageNet weights). The unrolled steps are recomputed in the
reverse pass (meta.remat='step').
"""

from l2t_jax.config import default_config


def get_config():
  c = default_config()
  c.data.name = "voc_segmentation"
  c.data.image_size = 512
  c.data.val_size = 200
  c.data.augment = True
  c.data.zoom_range = (0.5, 2.0)
  c.student.name = "deeplab"  # student.stage_blocks=() and base_width=0: ResNet-18
  c.optim.name = "sgd"
  c.optim.learning_rate = 7e-3
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "cosine"
  c.train.steps = 30_000
  c.train.batch_size = 16
  c.train.log_every = 500
  c.train.eval_every = 5000
  c.train.eval_batch_size = 16
  c.meta.val_batch_size = 16
  c.meta.remat = "step"
  c.checkpoint.every = 2000
  c.parallel.devices = 0  # the batch split over all local devices
  return c
