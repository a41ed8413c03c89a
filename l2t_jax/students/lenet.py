"""LeNet-5 (LeCun et al. 1998) for 28x28 or 32x32 grey images, with ReLU and max pooling."""

from typing import Sequence

import flax.linen as nn

# The architecture that defines LeNet-5: two convolutions (6, 16 maps of 5x5), then 120-84 units.
CONV_FEATURES = (6, 16)
DENSE_FEATURES = (120, 84)
KERNEL = 5


class LeNet5(nn.Module):
  num_classes: int
  conv_features: Sequence[int] = CONV_FEATURES
  dense_features: Sequence[int] = DENSE_FEATURES

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if x.ndim != 4:
      raise ValueError(
        f"LeNet5 expects images shaped (batch, height, width, channels), got {x.shape}"
      )
    # The first convolution pads (28x28 MNIST stands in for the original 32x32 input).
    for i, features in enumerate(self.conv_features):
      x = nn.Conv(features, (KERNEL, KERNEL), padding="SAME" if i == 0 else "VALID")(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    for features in self.dense_features:
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(self.num_classes)(x)
