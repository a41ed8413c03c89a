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
      cfg.learning_rate, {int(b) - cfg.warmup_steps: cfg.decay_factor for b in cfg.boundaries}
    )
  else:
    raise ValueError(f"optim.schedule='{cfg.schedule}' is not one of constant, cosine, piecewise")
  if cfg.warmup_steps:
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])
  return main


# Adam's sqrt(v) has an infinite derivative at v = 0 (a parameter whose gradient is exactly zero,
# e.g. behind a dead ReLU): L2T-DLN differentiates through the student's updates, and that 0 * inf
# made its hypergradients NaN. A tiny eps_root inside the square root keeps them finite and leaves
# the updates as they were (eps = 1e-8 outside the root dominates it).
ADAM_EPS_ROOT = 1e-16


def student_optimizer(
  cfg: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
  """SGD (with coupled L2 weight decay, as in the CIFAR ResNet recipes), Adam or AdamW."""
  lr = learning_rate_schedule(cfg, total_steps)
  if cfg.name == "sgd":
    sgd = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    return (
      optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd) if cfg.weight_decay else sgd
    )
  if cfg.name == "adam":
    adam = optax.adam(lr, eps_root=ADAM_EPS_ROOT)
    return (
      optax.chain(optax.add_decayed_weights(cfg.weight_decay), adam) if cfg.weight_decay else adam
    )
  if cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=cfg.weight_decay, eps_root=ADAM_EPS_ROOT)
  raise ValueError(f"optim.name='{cfg.name}' is not one of sgd, adam, adamw")


ADAM_EPS = 1e-8  # optax's default: Adam's step is the same for a weak gradient as for a strong one


def teacher_optimizer(
  learning_rate: float, grad_clip: float, eps: float = ADAM_EPS
) -> optax.GradientTransformation:
  """Adam with optional global-norm clipping; non-finite gradients skip the update (counted).
  `eps` well above the gradients' scale makes Adam's steps shrink with the gradient."""
  adam = optax.adam(learning_rate, eps=eps)
  inner = optax.chain(optax.clip_by_global_norm(grad_clip), adam) if grad_clip > 0 else adam
  return optax.apply_if_finite(inner, max_consecutive_errors=1_000_000)
