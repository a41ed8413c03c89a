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


def _backbone(cfg: ml_collections.ConfigDict, blocks: tuple, width: int) -> dict:
  """`student.stage_blocks` and `student.base_width`, or the standard backbone's where unset."""
  return {"blocks": tuple(cfg.stage_blocks) or blocks, "width": cfg.base_width or width}


def build_student(cfg: ml_collections.ConfigDict, num_classes: int,
                  axis_name: str | None = None) -> Student:
  """The student named by `cfg.name`. `axis_name` is the device axis of a data-parallel run, over
  which BatchNorm averages its batch statistics (None on one device)."""
  from l2t_jax.students import cnn1d, deeplab, densenet, lenet, mlp, resnet, wide_resnet, yolo
  norm = dict(bn_momentum=cfg.bn_momentum, bn_epsilon=cfg.bn_epsilon, axis_name=axis_name)
  builders = {
      "mlp": lambda: mlp.MLP(hidden=tuple(cfg.hidden), num_classes=num_classes),
      "cnn1d": lambda: cnn1d.CNN1D(channels=tuple(cfg.channels), kernel_size=cfg.kernel_size,
                                   num_classes=num_classes),
      "lenet5": lambda: lenet.LeNet5(num_classes=num_classes),
      "resnet": lambda: resnet.CIFARResNet(depth=cfg.depth, num_classes=num_classes, **norm),
      "wrn": lambda: wide_resnet.WideResNet(depth=cfg.depth, widen_factor=cfg.widen_factor,
                                            num_classes=num_classes, **norm),
      "densenet": lambda: densenet.DenseNetBC(depth=cfg.depth, growth_rate=cfg.growth_rate,
                                              num_classes=num_classes, **norm),
      "yolo": lambda: yolo.YOLOv3(num_classes=num_classes, **_backbone(
          cfg, yolo.DARKNET53_BLOCKS, yolo.DARKNET53_WIDTH), **norm),
      "deeplab": lambda: deeplab.DeepLab(num_classes=num_classes, **_backbone(
          cfg, deeplab.RESNET18_BLOCKS, deeplab.RESNET_WIDTH), **norm),
  }
  if cfg.name not in builders:
    raise ValueError(f"student.name='{cfg.name}' is not a known student; known: {sorted(builders)}")
  return from_linen(builders[cfg.name]())
