"""Student networks: flax modules behind one pure interface, built by name from the config."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import ml_collections

Params = Any
ModelState = Any  # non-trainable collections such as BatchNorm statistics ({} when none)


class Student(NamedTuple):
  """`init(rng, x) -> (params, model_state)`; `apply(params, model_state, x, train) -> (logits,
  model_state)`. In training mode `apply` returns the updated model state."""
  init: Callable[[jax.Array, jax.Array], tuple[Params, ModelState]]
  apply: Callable[[Params, ModelState, jax.Array, bool], tuple[jax.Array, ModelState]]
  module: nn.Module


def from_linen(module: nn.Module) -> Student:
  """Wraps a linen module whose `__call__(x, train)` returns logits."""

  def init(rng, x):
    variables = dict(module.init(rng, x, train=False))
    params = variables.pop("params")
    return params, variables

  def apply(params, model_state, x, train):
    variables = {"params": params, **model_state}
    if train and model_state:
      logits, new_state = module.apply(variables, x, train=True, mutable=list(model_state))
      return logits, dict(new_state)
    return module.apply(variables, x, train=train), model_state

  return Student(init=init, apply=apply, module=module)


def build_student(cfg: ml_collections.ConfigDict, num_classes: int) -> Student:
  """The student named by `cfg.name`."""
  from l2t_jax.students import cnn1d, mlp
  builders = {
      "mlp": lambda: mlp.MLP(hidden=tuple(cfg.hidden), num_classes=num_classes),
      "cnn1d": lambda: cnn1d.CNN1D(channels=tuple(cfg.channels), kernel_size=cfg.kernel_size,
                                   num_classes=num_classes),
  }
  if cfg.name not in builders:
    raise ValueError(f"student.name='{cfg.name}' is not a known student; known: {sorted(builders)}")
  return from_linen(builders[cfg.name]())
