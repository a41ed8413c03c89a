"""A small strided 1-D convolutional network for sequence inputs shaped (batch, length, channels)."""

from typing import Sequence

import flax.linen as nn


class CNN1D(nn.Module):
  channels: Sequence[int]
  kernel_size: int
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if x.ndim != 3:
      raise ValueError(f"CNN1D expects inputs shaped (batch, length, channels), got {x.shape}")
    for width in self.channels:
      x = nn.relu(nn.Conv(width, (self.kernel_size,), strides=(2,), padding="SAME")(x))
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
