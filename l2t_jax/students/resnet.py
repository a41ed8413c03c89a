"""The CIFAR ResNets of He et al. 2016 (section 4.2): depth 6n+2 (ResNet-8/20/32/...).

A 3x3 convolution with 16 maps, then three stages of n basic blocks with 16, 32 and 64 maps (the
first block of stages 2 and 3 halves the resolution), global average pooling and a dense layer.
Shortcuts are identities; where the shape changes they subsample and pad the new channels with
zeros (the paper's option A, which keeps ResNet-20 at 0.27M parameters).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from l2t_jax.students.layers import batch_norm, conv, units_per_stage

STAGE_FEATURES = (16, 32, 64)


def depth_to_blocks(depth: int) -> int:
  return units_per_stage(depth, 2, "CIFAR ResNet", "8, 14, 20, 32, 44, 56, 110")


class BasicBlock(nn.Module):
  features: int
  strides: int
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(conv(self.features, 3, self.strides)(x)))
    y = self.norm()(conv(self.features, 3)(y))
    shortcut = x
    if self.strides > 1:
      shortcut = shortcut[:, :: self.strides, :: self.strides, :]
    extra = self.features - shortcut.shape[-1]
    if extra:
      shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return nn.relu(y + shortcut)


class CIFARResNet(nn.Module):
  depth: int
  num_classes: int
  bn_momentum: float
  bn_epsilon: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    blocks = depth_to_blocks(self.depth)
    norm = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.axis_name)
    x = nn.relu(norm()(conv(STAGE_FEATURES[0], 3)(x)))
    for stage, features in enumerate(STAGE_FEATURES):
      for block in range(blocks):
        x = BasicBlock(features, 2 if stage > 0 and block == 0 else 1, norm)(x)
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))
