"""Optax optimizers built from the config: the student's, and the teachers' own."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  if cfg.schedule == "constant":
    main = optax.constant_schedule(cfg.learning_rate)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(cfg.learning_rate, max(total_steps - cfg.warmup_steps, 1))
  elif cfg.schedule == "piecewise":
    main = optax.piecewise_constant_schedule(
        cfg.learning_rate, {int(b) - cfg.warmup_steps: cfg.decay_factor for b in cfg.boundaries})
  else:
    raise ValueError(f"optim.schedule='{cfg.schedule}' is not one of constant, cosine, piecewise")
  if cfg.warmup_steps:
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])
  return main


def student_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """SGD (with coupled L2 weight decay, as in the CIFAR ResNet recipes), Adam or AdamW."""
  lr = learning_rate_schedule(cfg, total_steps)
  if cfg.name == "sgd":
    sgd = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd) if cfg.weight_decay else sgd
  if cfg.name == "adam":
    adam = optax.adam(lr)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), adam) if cfg.weight_decay else adam
  if cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=cfg.weight_decay)
  raise ValueError(f"optim.name='{cfg.name}' is not one of sgd, adam, adamw")


def teacher_optimizer(learning_rate: float, grad_clip: float) -> optax.GradientTransformation:
  """Adam with optional global-norm clipping; non-finite gradients skip the update (counted)."""
  adam = optax.adam(learning_rate)
  inner = optax.chain(optax.clip_by_global_norm(grad_clip), adam) if grad_clip > 0 else adam
  return optax.apply_if_finite(inner, max_consecutive_errors=1_000_000)
