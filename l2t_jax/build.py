"""From a validated config to the objects a run is made of: the method, its segments, the loss the
student trains on, the teacher and, for detection and segmentation, the task. The only place where
config keys meet the method's pieces."""

from __future__ import annotations

import functools

import ml_collections
import optax

from l2t_jax import dlf, losses, optim, teacher_io
from l2t_jax.config import DETECTION_DATASETS, SEGMENTATION_DATASETS
from l2t_jax.data import augment as augment_lib
from l2t_jax.data import dense_augment
from l2t_jax.dln import make_dln
from l2t_jax.methods import (
  Augment,
  Method,
  Segments,
  dlf_method,
  dln_method,
  fixed_loss_method,
  uniform_guess_features,
)
from l2t_jax.student_loss import StudentLoss
from l2t_jax.students import Student
from l2t_jax.students.yolo import AnchorLayout, anchor_layout, fit_anchors
from l2t_jax.tasks import Task, detection_task, segmentation_task, task_loss
from l2t_jax.teacher import NUM_STATE_FEATURES, LSTMTeacher
from l2t_jax.teaching import Teaching
from l2t_jax.unroll import LossFn


def detection_layout(
  config: ml_collections.ConfigDict, image_shape: tuple[int, ...], train_labels=None
) -> AnchorLayout:
  """The YOLO-v3 output layout of `config.student.anchors` for images `(height, width, ...)`;
  "kmeans" fits the anchors to `train_labels` (the training split's packed boxes), which it needs."""
  if config.student.anchors == "kmeans":
    if train_labels is None:
      raise ValueError("student.anchors='kmeans' fits the anchors to the training boxes: pass them")
    return anchor_layout(*image_shape[:2], fit_anchors(train_labels))
  return anchor_layout(*image_shape[:2])


def make_task(
  config: ml_collections.ConfigDict,
  num_classes: int,
  image_shape: tuple[int, ...],
  axis_name: str | None = None,
  train_labels=None,
) -> Task | None:
  """The detection or segmentation task of `config.data.name` (`l2t_jax.tasks`), or None for
  classification. `image_shape`: the images' `(height, width, channels)`; `axis_name`: the device
  axis of a data-parallel run; `train_labels`: the training split's labels (detection with
  `student.anchors='kmeans'` fits its anchors to them)."""
  if config.data.name in DETECTION_DATASETS:
    height, width = image_shape[:2]
    layout = detection_layout(config, image_shape, train_labels)
    return detection_task(layout, num_classes, height, width, axis_name)
  if config.data.name in SEGMENTATION_DATASETS:
    return segmentation_task(num_classes, axis_name)
  return None


def fixed_loss_fn(config: ml_collections.ConfigDict, task: Task | None = None) -> LossFn:
  """`loss_fn(loss_params, logits, labels)` for the hand-made losses (loss_params unused); with a
  `task`, its standard loss (config.validate allows only `ce` there)."""
  if task is not None:
    return lambda _, outputs, y: task.standard_loss(outputs, y)
  if config.method == "ce":
    return lambda _, logits, y: losses.cross_entropy(logits, y)
  if config.method == "label_smoothing":
    return lambda _, logits, y: losses.label_smoothing(logits, y, config.loss.label_smoothing)
  if config.method == "focal":
    return lambda _, logits, y: losses.focal(logits, y, config.loss.focal_gamma)
  if config.method == "gce":
    return lambda _, logits, y: losses.generalized_ce(logits, y, config.loss.gce_q)
  if config.method == "sce":
    alpha, beta = config.loss.sce_alpha, config.loss.sce_beta
    return lambda _, logits, y: losses.symmetric_ce(logits, y, alpha, beta)
  raise ValueError(f"method='{config.method}' has no fixed loss")


def make_teacher(teacher_cfg: ml_collections.ConfigDict) -> LSTMTeacher:
  """The LSTM teacher of `config.teacher`."""
  return LSTMTeacher(
    hidden=teacher_cfg.hidden,
    layers=teacher_cfg.layers,
    output_scale=teacher_cfg.output_scale,
    preprocess_p=teacher_cfg.preprocess_p,
    num_features=NUM_STATE_FEATURES if teacher_cfg.state_features else 0,
    network=teacher_cfg.network,
  )


def make_student_loss(dln_cfg: ml_collections.ConfigDict) -> StudentLoss:
  """The loss the student trains on under `config.dln`: the DLN, tabulated when `table_size`."""
  return StudentLoss(
    make_dln(dln_cfg),
    table_size=dln_cfg.table_size,
    slope_bound=dln_cfg.slope_bound,
    slope_floor=dln_cfg.slope_floor,
    curvature_bound=dln_cfg.curvature_bound,
  )


def make_teaching(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Teaching:
  """The teaching component of `config.teacher` and `config.meta`."""
  return Teaching(
    make_teacher(config.teacher),
    optim.teacher_optimizer(
      config.teacher.learning_rate, config.teacher.grad_clip, config.teacher.adam_eps
    ),
    teacher_every=config.meta.teacher_every,
    gradient=config.teacher.gradient,
    axis_name=axis_name,
  )


def make_augment(data_cfg: ml_collections.ConfigDict) -> Augment:
  """The batch augmentation of `config.data`: the classifiers' crop and flip (labels unchanged),
  or for detection and segmentation a zoom, shift and flip of the images with their boxes or
  masks (`l2t_jax.data.dense_augment`)."""
  zoom = tuple(data_cfg.zoom_range)
  if data_cfg.name in DETECTION_DATASETS:
    return functools.partial(dense_augment.detection_batch, zoom_range=zoom)
  if data_cfg.name in SEGMENTATION_DATASETS:
    return functools.partial(dense_augment.segmentation_batch, zoom_range=zoom)
  crop = functools.partial(augment_lib.crop_and_flip_batch, padding=data_cfg.crop_padding)
  return lambda keys, x, y: (crop(keys, x), y)


def make_segments(
  config: ml_collections.ConfigDict,
  student: Student,
  optimizer: optax.GradientTransformation,
  num_classes: int,
  axis_name: str | None = None,
  task: Task | None = None,
) -> Segments:
  """The segments of a run; with a `task`, the teacher's validation objective is the task's
  standard loss and the steps log the task's statistics."""
  augment = make_augment(config.data) if config.data.augment else None
  val_fn = losses.validation_objective(
    config.meta.val_objective,
    config.meta.smooth_error_k,
    config.meta.scale_free_temperature,
    axis_name,
  )
  return Segments(
    student=student,
    optimizer=optimizer,
    val_fn=task.standard_loss if task else val_fn,
    stats=task.stats if task else None,
    unroll_steps=config.meta.unroll_steps,
    total_steps=config.train.steps,
    initial_features=uniform_guess_features(num_classes),
    remat=config.meta.remat,
    axis_name=axis_name,
    augment=augment,
    seed=config.seed,
  )


def build_method(
  config: ml_collections.ConfigDict,
  student: Student,
  optimizer: optax.GradientTransformation,
  num_classes: int,
  axis_name: str | None = None,
  task: Task | None = None,
) -> Method:
  """The init and cycle functions of `config.method` (pure; jit them, or with `axis_name` run the
  cycle data-parallel through `l2t_jax.parallel`). `task` (`make_task`): a detection or
  segmentation student's loss and statistics; None for classification."""
  segments = make_segments(config, student, optimizer, num_classes, axis_name, task)
  if config.method == "l2t_dln":
    theta = None
    if config.teacher_init:
      theta = teacher_io.load_teacher(
        config.teacher_init, config.teacher, make_teacher(config.teacher)
      )
    loss = make_student_loss(config.dln)
    if task is not None:
      loss = task_loss(task, loss)
    return dln_method(
      segments,
      loss,
      make_teaching(config, axis_name),
      teacher_params=theta,
      continue_from=config.meta.continue_from,
    )
  if config.method == "l2t_dlf":
    teacher = dlf.DLFTeacher(
      dlf.DLFNetwork(tuple(config.dlf.hidden), num_classes), NUM_STATE_FEATURES
    )
    return dlf_method(
      segments,
      teacher,
      optim.teacher_optimizer(config.dlf.learning_rate, config.dlf.grad_clip),
      config.meta.teacher_every,
    )
  return fixed_loss_method(config.method, segments, fixed_loss_fn(config, task))
