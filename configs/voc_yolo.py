"""PASCAL VOC detection, YOLO-v3 (Darknet-53, 416 pixels), L2T-DLN.

Data: VOC 2007+2012 trainval for training (the last 1,000 images carved off as the teacher's
validation split), VOC 2007 test for testing, through TFDS (`voc/2007`, `voc/2012`; prepare them
as docs/running.md says and pass --config.data.data_dir). Evaluation: VOC mAP@0.5, area (the
accuracy) and 11-point (VOC 2007's, beside it). The DLN scores YOLO-v3's objectness and class terms
(the paper's supplement, section 4, lists the loss terms it teaches); the box term keeps its
regression form (l2t_jax/yolo_loss.py). `--config.method=ce` is the standard YOLO-v3 loss.

Schedule: the supplement here gives the loss terms, not a schedule, so this is darknet's
yolov3-voc recipe: SGD, momentum 0.9, weight decay 5e-4, learning rate 1e-3 after 1,000 warm-up
steps, multiplied by 0.1 at steps 40,000 and 45,000 of 50,200, batch 64; augmentation by a random
zoom in [0.75, 1.33], shift and horizontal flip with the boxes (no colour jitter). The backbone
starts from scratch: no ImageNet-pretrained Darknet-53 weights are loaded. Memory: the inputs are
held as float32 (about 34 GB on the host and on the device); the unrolled steps are recomputed in
the reverse pass (meta.remat='step').
"""

from l2t_jax.config import default_config


def get_config():
  c = default_config()
  c.data.name = "voc_detection"
  c.data.image_size = 416
  c.data.val_size = 1000
  c.data.augment = True
  c.data.zoom_range = (0.75, 1.33)
  c.student.name = "yolo"  # student.stage_blocks=() and base_width=0: the standard Darknet-53
  c.optim.name = "sgd"
  c.optim.learning_rate = 1e-3
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "piecewise"
  c.optim.warmup_steps = 1000
  c.optim.boundaries = (40_000, 45_000)
  c.optim.decay_factor = 0.1
  c.train.steps = 50_200
  c.train.batch_size = 64
  c.train.log_every = 500
  c.train.eval_every = 5000
  c.train.eval_batch_size = 64
  c.meta.val_batch_size = 64
  c.meta.remat = "step"
  c.checkpoint.every = 2000
  c.parallel.devices = 0  # the batch split over all local devices
  return c
