"""Shapes scenes, YOLO-v3 with a small Darknet backbone, L2T-DLN: detection on a laptop CPU.

The DLN scores YOLO-v3's objectness and class terms on their binary items; the box term keeps its
regression form (l2t_jax/yolo_loss.py). `--config.method=ce` trains on the standard YOLO-v3 loss.
Evaluation reports VOC mAP@0.5 (area) as the accuracy, the 11-point value beside it. The full
Darknet-53 is `--config.student.stage_blocks='()' --config.student.base_width=0`.
"""

from l2t_jax.config import default_config


def get_config():
  config = default_config()
  config.data.name = "shapes_detection"
  config.data.image_size = 64
  config.data.shapes_train_size = 2000
  config.data.shapes_test_size = 500
  config.data.val_size = 200
  config.student.name = "yolo"
  config.student.stage_blocks = (1, 1, 1, 1, 1)
  config.student.base_width = 8
  # Anchors fitted to the scenes' boxes (15-60% of the side): YOLO-v3's COCO anchors would put
  # nearly every box on the 2x2 grid of the stride-32 head (students/yolo.py).
  config.student.anchors = "kmeans"
  # Without augmentation the detector memorises the 1800 training scenes (its validation loss rises
  # from step 500 on); a random zoom in [0.7, 1.4], shift and flip of scenes and boxes tripled the
  # test mAP@0.5 at step 1500 (benchmarks/results/README.md).
  config.data.augment = True
  config.data.zoom_range = (0.7, 1.4)
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
