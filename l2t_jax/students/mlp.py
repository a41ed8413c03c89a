"""A ReLU multilayer perceptron on flattened inputs."""

from typing import Sequence

import flax.linen as nn


class MLP(nn.Module):
  hidden: Sequence[int]
  num_classes: int
  dropout: float = 0.0  # rate of Dropout after every hidden layer, in training

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)
