"""YOLO-v3 (Redmon & Farhadi 2018): a Darknet-53 backbone and detection heads at three scales.

Darknet-53: a 3x3 convolution of `width` maps, then five stages, each a stride-2 3x3 convolution
doubling the maps and `blocks[i]` residual blocks (1x1 to half the maps, 3x3 back); every
convolution is followed by BatchNorm and a leaky ReLU (slope 0.1). The standard network has
`width=32, blocks=(1, 2, 8, 8, 4)`; a smaller `width` and fewer blocks give the small backbone
that CPU runs and tests use. The last three stages (strides 8, 16, 32) feed the heads, in the
feature-pyramid way of YOLO-v3: the stride-32 head's features, reduced and upsampled, are joined to
the stride-16 stage, and so on down to stride 8.

Each head predicts, for every cell and each of its three anchors, `5 + C` numbers: the box
offsets `(t_x, t_y, t_w, t_h)`, the objectness logit and one logit per class. The module returns
all anchors of all scales flattened into `(batch, N, 5 + C)` (scale by scale from stride 8, then
row, column, anchor), which `AnchorLayout` describes. Anchors are fractions of the image side, so
that they cover the same part of any image: by default YOLO-v3's nine standard ones (k-means on
COCO, given for 416-pixel images), or nine fitted to a dataset's own boxes by `fit_anchors`, the
way YOLO-v3 chose its own (Redmon & Farhadi 2017, 2018). The fit matters where the boxes are not
COCO-like: on 64-pixel shapes scenes, whose objects cover 15-60% of the side, the standard anchors
send nearly every box to the two largest of the stride-32 head's 2x2 cells, where several collide.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from l2t_jax.students.layers import batch_norm, conv

DARKNET53_BLOCKS = (1, 2, 8, 8, 4)
DARKNET53_WIDTH = 32
STRIDES = (8, 16, 32)  # of the three heads, smallest first
ANCHORS_PER_SCALE = 3
# YOLO-v3's anchors (width, height) in pixels of a 416-pixel image, three per scale, for the
# strides 8, 16 and 32 in turn.
ANCHORS_416 = (
  (10, 13),
  (16, 30),
  (33, 23),
  (30, 61),
  (62, 45),
  (59, 119),
  (116, 90),
  (156, 198),
  (373, 326),
)
ANCHOR_REFERENCE_SIZE = 416
BOX_OUTPUTS = 5  # t_x, t_y, t_w, t_h, objectness
LEAKY_SLOPE = 0.1  # Darknet's leaky ReLU
HEAD_CONVS = 5  # the alternating 1x1 / 3x3 convolutions of each head before its output
# Objectness starts at this probability (its bias at the logit), not 1/2: most anchors see no
# object, and a start at 1/2 makes the first steps of every run only learn that (the prior of
# RetinaNet, Lin et al. 2017).
OBJECTNESS_PRIOR = 0.01
ANCHOR_SETS = ("coco", "kmeans")  # student.anchors: YOLO-v3's standard nine, or fitted ones
KMEANS_ITERATIONS = 100  # at most; the fit stops earlier once no box changes its cluster


class AnchorLayout(NamedTuple):
  """Per flattened anchor: its cell `(x, y)`, the grid size `(columns, rows)` of its scale, its
  anchor `(w, h)` as fractions of the image, and the index of its scale and of its anchor (0..8);
  `shapes`: the nine anchors `(w, h)` themselves, smallest scale first."""

  cells: np.ndarray  # (N, 2) float32
  grid: np.ndarray  # (N, 2) float32
  anchors: np.ndarray  # (N, 2) float32
  scale: np.ndarray  # (N,) int32
  anchor_id: np.ndarray  # (N,) int32
  shapes: np.ndarray  # (9, 2) float32

  @property
  def offsets(self) -> np.ndarray:
    """The first flattened index of every scale, and the total count last."""
    sizes = [int((self.scale == s).sum()) for s in range(len(STRIDES))]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)


def normalised_anchors() -> np.ndarray:
  """YOLO-v3's standard anchors as fractions of the image side (9, 2)."""
  return np.asarray(ANCHORS_416, np.float32) / ANCHOR_REFERENCE_SIZE


def shape_iou(wh, anchors, xp=np):
  """IoU of box shapes `wh` (M, 2) with anchor shapes (K, 2), centred together: (M, K). `xp`:
  the array module (`numpy` for fitting anchors, `jax.numpy` inside the loss)."""
  inter = xp.prod(xp.minimum(wh[:, None], anchors[None]), -1)
  return inter / (xp.prod(wh, -1)[:, None] + xp.prod(anchors, -1)[None] - inter)


def fit_anchors(truth: np.ndarray, count: int = len(ANCHORS_416)) -> np.ndarray:
  """`count` anchors `(w, h)` fitted to the boxes of ground truth `(..., M, 5+)` (rows `(x0, y0,
  x1, y1, class, ...)` in fractions of the image, class -1 unused): k-means with the distance
  1 - IoU of the shapes, YOLO-v3's way, each centre the median of its boxes; sorted by area (the
  first three go to the finest head). Deterministic: the centres start at area quantiles."""
  rows = np.asarray(truth, np.float64).reshape(-1, np.shape(truth)[-1])
  wh = (rows[:, 2:4] - rows[:, 0:2])[rows[:, 4] >= 0]
  wh = wh[np.all(wh > 0, -1)]
  if len(wh) < count:
    raise ValueError(f"fitting {count} anchors needs at least {count} boxes, got {len(wh)}")
  by_area = wh[np.argsort(np.prod(wh, -1), kind="stable")]
  centres = by_area[np.linspace(0, len(wh) - 1, 2 * count + 1)[1::2].round().astype(int)]
  cluster = None
  for _ in range(KMEANS_ITERATIONS):
    nearest = np.argmax(shape_iou(wh, centres), -1)
    if cluster is not None and np.array_equal(nearest, cluster):
      break
    cluster = nearest
    centres = np.stack(
      [np.median(wh[cluster == k], 0) if np.any(cluster == k) else centres[k] for k in range(count)]
    )
  return centres[np.argsort(np.prod(centres, -1), kind="stable")].astype(np.float32)


def anchor_layout(height: int, width: int, anchors: np.ndarray | None = None) -> AnchorLayout:
  """The layout of the flattened output for images of `height` x `width` (multiples of 32), with
  the nine `anchors` (w, h) as fractions of the image (smallest scale first; None: YOLO-v3's)."""
  if height % STRIDES[-1] or width % STRIDES[-1]:
    raise ValueError(
      f"YOLO-v3 needs image sides that are multiples of {STRIDES[-1]}, got {height}x{width}"
    )
  anchors = normalised_anchors() if anchors is None else np.asarray(anchors, np.float32)
  if anchors.shape != (len(STRIDES) * ANCHORS_PER_SCALE, 2):
    raise ValueError(
      f"YOLO-v3 needs {len(STRIDES) * ANCHORS_PER_SCALE} anchors (w, h), got shape {anchors.shape}"
    )
  parts = []
  for s, stride in enumerate(STRIDES):
    rows, cols = height // stride, width // stride
    y, x, a = np.meshgrid(
      np.arange(rows), np.arange(cols), np.arange(ANCHORS_PER_SCALE), indexing="ij"
    )
    ids = s * ANCHORS_PER_SCALE + a.reshape(-1)
    parts.append(
      (
        np.stack([x.reshape(-1), y.reshape(-1)], -1),
        np.broadcast_to([cols, rows], (ids.size, 2)),
        anchors[ids],
        np.full(ids.size, s),
        ids,
      )
    )
  cells, grid, anc, scale, ids = (np.concatenate(p) for p in zip(*parts))
  return AnchorLayout(
    cells.astype(np.float32),
    grid.astype(np.float32),
    anc.astype(np.float32),
    scale.astype(np.int32),
    ids.astype(np.int32),
    anchors,
  )


def output_bias(num_classes: int):
  """The heads' output bias: zero, but objectness at the logit of OBJECTNESS_PRIOR."""

  def init(key, shape, dtype=jnp.float32):
    del key
    per_anchor = (
      jnp.zeros((BOX_OUTPUTS + num_classes,), dtype)
      .at[4]
      .set(np.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR)))
    )
    return jnp.tile(per_anchor, shape[0] // per_anchor.size)

  return init


class ConvBN(nn.Module):
  features: int
  kernel: int
  norm: nn.Module
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    x = self.norm()(conv(self.features, self.kernel, self.strides)(x))
    return jax.nn.leaky_relu(x, LEAKY_SLOPE)


class Darknet(nn.Module):
  """Darknet-53 (defaults) or a smaller one; returns the stride 8, 16 and 32 features."""

  blocks: Sequence[int]
  width: int
  norm: nn.Module

  @nn.compact
  def __call__(self, x):
    x = ConvBN(self.width, 3, self.norm)(x)
    features = []
    for stage, count in enumerate(self.blocks):
      maps = self.width * 2 ** (stage + 1)
      x = ConvBN(maps, 3, self.norm, strides=2)(x)
      for _ in range(count):
        y = ConvBN(maps // 2, 1, self.norm)(x)
        x = x + ConvBN(maps, 3, self.norm)(y)
      features.append(x)
    return features[-len(STRIDES) :]


class YOLOv3(nn.Module):
  num_classes: int
  blocks: Sequence[int] = DARKNET53_BLOCKS
  width: int = DARKNET53_WIDTH
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4:
      raise ValueError(
        f"YOLOv3 expects images shaped (batch, height, width, channels), got {x.shape}"
      )
    if len(self.blocks) < len(STRIDES):
      raise ValueError(
        f"a YOLO-v3 backbone needs at least {len(STRIDES)} stages, got blocks={tuple(self.blocks)}"
      )
    norm = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.axis_name)
    feats = Darknet(self.blocks, self.width, norm)(x)
    outputs, route = [], None
    for level in reversed(range(len(STRIDES))):  # stride 32 first
      f = feats[level]
      maps = f.shape[-1] // 2
      if route is not None:
        route = ConvBN(maps // 2, 1, norm)(route)
        b, h, w, c = route.shape
        route = jax.image.resize(route, (b, 2 * h, 2 * w, c), "nearest")
        f = jnp.concatenate([route, f], axis=-1)
      for i in range(HEAD_CONVS):
        f = ConvBN(maps if i % 2 == 0 else 2 * maps, 1 if i % 2 == 0 else 3, norm)(f)
      route = f
      y = ConvBN(2 * maps, 3, norm)(f)
      y = nn.Conv(
        ANCHORS_PER_SCALE * (BOX_OUTPUTS + self.num_classes),
        (1, 1),
        bias_init=output_bias(self.num_classes),
      )(y)
      outputs.append(y.reshape(y.shape[0], -1, BOX_OUTPUTS + self.num_classes))
    return jnp.concatenate(outputs[::-1], axis=1)  # stride 8 first
