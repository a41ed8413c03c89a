"""A DeepLab-v3 style segmentation student (Chen et al. 2017) on a ResNet backbone.

Backbone: an ImageNet ResNet with basic blocks (ResNet-18: `blocks=(2, 2, 2, 2)`, `width=64`; a
smaller width and fewer blocks for CPU runs): a 7x7 stride-2 convolution and 3x3 stride-2 max
pooling, then four stages of `width * (1, 2, 4, 8)` maps. The third and fourth stages keep the
resolution and dilate their convolutions instead (rates 2 and 4), so the features have output
stride 8. Head: atrous spatial pyramid pooling (a 1x1 convolution, three 3x3 convolutions at
`ASPP_RATES`, and the image-level mean, each to `4 * width` maps, concatenated and mixed by a 1x1
convolution), a 3x3 convolution and the per-class 1x1 classifier. The logits are resized
bilinearly to the input's height and width: prediction and its metric are at full resolution.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2t_jax.students.layers import batch_norm, he_normal

RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET_WIDTH = 64
STAGE_WIDTHS = (1, 2, 4, 8)  # times `width`
STAGE_STRIDES = (1, 2, 1, 1)  # after the stem's stride 4: output stride 8
STAGE_DILATIONS = (1, 1, 2, 4)  # the strides that stages 3 and 4 drop, taken as dilation
ASPP_RATES = (12, 24, 36)  # DeepLab-v3's rates at output stride 8
ASPP_WIDTH = 4  # ASPP branches have ASPP_WIDTH * width maps (256 for ResNet widths)
STEM_KERNEL = 7


def dilated_conv(features: int, kernel: int, strides: int = 1, dilation: int = 1) -> nn.Conv:
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(strides, strides),
    padding="SAME",
    kernel_dilation=(dilation, dilation),
    use_bias=False,
    kernel_init=he_normal,
  )


class DilatedBlock(nn.Module):
  """A basic residual block (two 3x3 convolutions), strided or dilated; a 1x1 projection on the
  shortcut where the shape changes (ResNet's option B)."""

  features: int
  strides: int
  dilation: int
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(dilated_conv(self.features, 3, self.strides, self.dilation)(x)))
    y = self.norm()(dilated_conv(self.features, 3, dilation=self.dilation)(y))
    if self.strides > 1 or x.shape[-1] != self.features:
      x = self.norm()(dilated_conv(self.features, 1, self.strides)(x))
    return nn.relu(x + y)


class DeepLab(nn.Module):
  num_classes: int
  blocks: Sequence[int] = RESNET18_BLOCKS
  width: int = RESNET_WIDTH
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4:
      raise ValueError(
        f"DeepLab expects images shaped (batch, height, width, channels), got {x.shape}"
      )
    if len(self.blocks) != len(STAGE_WIDTHS):
      raise ValueError(
        f"the DeepLab ResNet has {len(STAGE_WIDTHS)} stages, got blocks={tuple(self.blocks)}"
      )
    batch, height, width, _ = x.shape
    norm = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.axis_name)
    h = nn.relu(norm()(dilated_conv(self.width, STEM_KERNEL, strides=2)(x)))
    h = nn.max_pool(h, (3, 3), strides=(2, 2), padding="SAME")
    for count, scale, stride, dilation in zip(
      self.blocks, STAGE_WIDTHS, STAGE_STRIDES, STAGE_DILATIONS
    ):
      for i in range(count):
        h = DilatedBlock(self.width * scale, stride if i == 0 else 1, dilation, norm)(h)
    maps = ASPP_WIDTH * self.width
    branches = [nn.relu(norm()(dilated_conv(maps, 1)(h)))]
    branches += [nn.relu(norm()(dilated_conv(maps, 3, dilation=r)(h))) for r in ASPP_RATES]
    pooled = nn.relu(norm()(dilated_conv(maps, 1)(h.mean(axis=(1, 2), keepdims=True))))
    branches.append(jnp.broadcast_to(pooled, h.shape[:3] + (maps,)))
    h = nn.relu(norm()(dilated_conv(maps, 1)(jnp.concatenate(branches, -1))))
    h = nn.relu(norm()(dilated_conv(maps, 3)(h)))
    logits = nn.Conv(self.num_classes, (1, 1))(h)
    return jax.image.resize(logits, (batch, height, width, self.num_classes), "bilinear")
