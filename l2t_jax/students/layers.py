"""Building blocks the image students share: He-initialised convolutions and BatchNorm.

BatchNorm uses the batch's statistics in training mode and its running averages in evaluation
mode. With `axis_name` set (data-parallel runs), the batch statistics are averaged over the device
axis, so that every device normalises with the statistics of the global batch.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn

# He et al. 2015 initialisation (fan-out, normal), as the CIFAR ResNet recipes use.
he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, strides: int = 1, name: str | None = None) -> nn.Conv:
  """A bias-free convolution (a BatchNorm follows or precedes it), 'SAME' padding."""
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(strides, strides),
    padding="SAME",
    use_bias=False,
    kernel_init=he_normal,
    name=name,
  )


def batch_norm(
  train: bool, momentum: float, epsilon: float, axis_name: str | None
) -> Callable[..., nn.BatchNorm]:
  """A BatchNorm factory bound to the mode (train: batch statistics; eval: running averages)."""
  return functools.partial(
    nn.BatchNorm,
    use_running_average=not train,
    momentum=momentum,
    epsilon=epsilon,
    axis_name=axis_name if train else None,
  )


def units_per_stage(depth: int, extra_layers: int, family: str, examples: str) -> int:
  """The n of a three-stage CIFAR network of depth 6n + `extra_layers` (n >= 1), or a ValueError
  that names the valid depths."""
  if depth < 6 + extra_layers or (depth - extra_layers) % 6:
    raise ValueError(
      f"student.depth={depth}: a {family} has depth 6n+{extra_layers} with n >= 1 ({examples}, ...)"
    )
  return (depth - extra_layers) // 6
