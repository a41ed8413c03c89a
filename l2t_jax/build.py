"""From a validated config to the objects a run is made of: the method, its segments, the loss the
student trains on and the teacher. The only place where config keys meet the method's pieces."""

from __future__ import annotations

import functools

import ml_collections
import optax

from l2t_jax import dlf, losses, optim, teacher_io
from l2t_jax.data import augment as augment_lib
from l2t_jax.dln import make_dln
from l2t_jax.methods import (Method, Segments, dlf_method, dln_method, fixed_loss_method,
                             uniform_guess_features)
from l2t_jax.student_loss import StudentLoss
from l2t_jax.students import Student
from l2t_jax.teacher import NUM_STATE_FEATURES, LSTMTeacher
from l2t_jax.teaching import Teaching
from l2t_jax.unroll import LossFn


def fixed_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
  """`loss_fn(loss_params, logits, labels)` for the hand-made losses (loss_params unused)."""
  if config.method == "ce":
    return lambda _, logits, y: losses.cross_entropy(logits, y)
  if config.method == "label_smoothing":
    return lambda _, logits, y: losses.label_smoothing(logits, y, config.loss.label_smoothing)
  if config.method == "focal":
    return lambda _, logits, y: losses.focal(logits, y, config.loss.focal_gamma)
  raise ValueError(f"method='{config.method}' has no fixed loss")


def make_teacher(teacher_cfg: ml_collections.ConfigDict) -> LSTMTeacher:
  """The LSTM teacher of `config.teacher`."""
  return LSTMTeacher(
      hidden=teacher_cfg.hidden, layers=teacher_cfg.layers, output_scale=teacher_cfg.output_scale,
      preprocess_p=teacher_cfg.preprocess_p,
      num_features=NUM_STATE_FEATURES if teacher_cfg.state_features else 0,
      network=teacher_cfg.network)


def make_student_loss(dln_cfg: ml_collections.ConfigDict) -> StudentLoss:
  """The loss the student trains on under `config.dln`: the DLN, tabulated when `table_size`."""
  return StudentLoss(make_dln(dln_cfg), table_size=dln_cfg.table_size,
                     slope_bound=dln_cfg.slope_bound, slope_floor=dln_cfg.slope_floor)


def make_teaching(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Teaching:
  """The teaching component of `config.teacher` and `config.meta`."""
  return Teaching(make_teacher(config.teacher),
                  optim.teacher_optimizer(config.teacher.learning_rate, config.teacher.grad_clip),
                  teacher_every=config.meta.teacher_every, gradient=config.teacher.gradient,
                  axis_name=axis_name)


def make_segments(config: ml_collections.ConfigDict, student: Student,
                  optimizer: optax.GradientTransformation, num_classes: int,
                  axis_name: str | None = None) -> Segments:
  augment = None
  if config.data.augment:
    augment = functools.partial(augment_lib.crop_and_flip_batch, padding=config.data.crop_padding)
  return Segments(
      student=student, optimizer=optimizer,
      val_fn=losses.validation_objective(config.meta.val_objective, config.meta.smooth_error_k,
                                        config.meta.scale_free_temperature, axis_name),
      unroll_steps=config.meta.unroll_steps, total_steps=config.train.steps,
      initial_features=uniform_guess_features(num_classes), remat=config.meta.remat,
      axis_name=axis_name, augment=augment, seed=config.seed)


def build_method(config: ml_collections.ConfigDict, student: Student,
                 optimizer: optax.GradientTransformation, num_classes: int,
                 axis_name: str | None = None) -> Method:
  """The init and cycle functions of `config.method` (pure; jit them, or with `axis_name` run the
  cycle data-parallel through `l2t_jax.parallel`)."""
  segments = make_segments(config, student, optimizer, num_classes, axis_name)
  if config.method == "l2t_dln":
    theta = None
    if config.teacher_init:
      theta = teacher_io.load_teacher(config.teacher_init, config.teacher,
                                      make_teacher(config.teacher))
    return dln_method(segments, make_student_loss(config.dln), make_teaching(config, axis_name),
                      teacher_params=theta, continue_from=config.meta.continue_from)
  if config.method == "l2t_dlf":
    teacher = dlf.DLFTeacher(dlf.DLFNetwork(tuple(config.dlf.hidden), num_classes),
                             NUM_STATE_FEATURES)
    return dlf_method(segments, teacher,
                      optim.teacher_optimizer(config.dlf.learning_rate, config.dlf.grad_clip),
                      config.meta.teacher_every)
  return fixed_loss_method(config.method, segments, fixed_loss_fn(config))
