"""DenseNet-BC (Huang et al. 2017) for CIFAR: bottleneck layers and compressed transitions.

Three dense blocks of (depth - 4) / 6 layers (BN-ReLU-conv1x1 to 4k maps, BN-ReLU-conv3x3 to k maps,
concatenated onto the input); between blocks a transition (BN-ReLU-conv1x1 to half the maps, 2x2
average pooling). DenseNet-BC-100 with growth rate k = 12 has 0.8M parameters.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from l2t_jax.students.layers import batch_norm, conv, units_per_stage

BLOCKS = 3
BOTTLENECK_WIDTH = 4  # the 1x1 convolution of a layer has 4k maps
COMPRESSION = 0.5  # a transition keeps half the maps (the "C" of BC)


def depth_to_layers(depth: int) -> int:
  return units_per_stage(depth, 4, "DenseNet-BC", "40, 100, 190, 250")


class DenseLayer(nn.Module):
  growth_rate: int
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    y = conv(BOTTLENECK_WIDTH * self.growth_rate, 1)(nn.relu(self.norm()(x)))
    y = conv(self.growth_rate, 3)(nn.relu(self.norm()(y)))
    return jnp.concatenate([x, y], axis=-1)


class DenseNetBC(nn.Module):
  depth: int
  growth_rate: int
  num_classes: int
  bn_momentum: float
  bn_epsilon: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers = depth_to_layers(self.depth)
    norm = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.axis_name)
    x = conv(2 * self.growth_rate, 3)(x)
    for block in range(BLOCKS):
      for _ in range(layers):
        x = DenseLayer(self.growth_rate, norm)(x)
      if block < BLOCKS - 1:
        x = conv(int(x.shape[-1] * COMPRESSION), 1)(nn.relu(norm()(x)))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(norm()(x))
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))
