"""Wide residual networks (Zagoruyko & Komodakis 2016), WRN-depth-k, for CIFAR.

Pre-activation basic blocks (BN-ReLU-conv3x3, twice) in three stages of 16k, 32k and 64k maps,
(depth - 4) / 6 blocks per stage; a 1x1 convolution on the shortcut where the shape changes.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn

from l2t_jax.students.layers import batch_norm, conv, units_per_stage

STAGE_FEATURES = (16, 32, 64)


def depth_to_blocks(depth: int) -> int:
  return units_per_stage(depth, 4, "wide ResNet", "10, 16, 22, 28, 40")


class WideBlock(nn.Module):
  features: int
  strides: int
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    pre = nn.relu(self.norm()(x))
    y = conv(self.features, 3, self.strides)(pre)
    y = conv(self.features, 3)(nn.relu(self.norm()(y)))
    if self.strides > 1 or x.shape[-1] != self.features:
      x = conv(self.features, 1, self.strides)(pre)
    return x + y


class WideResNet(nn.Module):
  depth: int
  widen_factor: int
  num_classes: int
  bn_momentum: float
  bn_epsilon: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    blocks = depth_to_blocks(self.depth)
    norm = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.axis_name)
    x = conv(STAGE_FEATURES[0], 3)(x)
    for stage, base in enumerate(STAGE_FEATURES):
      for block in range(blocks):
        x = WideBlock(base * self.widen_factor, 2 if stage > 0 and block == 0 else 1, norm)(x)
    x = nn.relu(norm()(x))
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))
