"""Detection and segmentation augmentation on the accelerator: one random zoom, shift and horizontal
flip per example, applied alike to its image, its boxes and its mask.

Every example draws from its own key (`augment.example_keys`: a function of the seed, the student
step and the position in the global batch, as the classifiers' crop and flip) a zoom factor `s`
(log-uniform in `zoom_range`), a shift and a flip. In pixels of the output (same size as the input),
an input point `X` lands at `s X + t` (then mirrored when flipped), with the shift `t = u (W - s W)`,
`u` uniform in [0, 1]: zooming in shows a random window of the enlarged image, zooming out puts the
shrunken image somewhere on the canvas. The image is resampled bilinearly, the mask by the nearest
pixel; what falls outside the input is 0 in the image (the mean after standardisation) and the
ignore label in the mask (counted in neither loss nor metric). Boxes, as fractions of the image, map
through the same transform and are clipped to it; a box left with less than `MIN_BOX_VISIBLE` of its
area inside the image is dropped (class -1), the others keep their class and any further columns
(the VOC `difficult` flag).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

MIN_BOX_VISIBLE = 0.5  # a box keeps its object when at least this share of it stays in the image
IGNORE_LABEL = 255  # what the mask holds where the output falls outside the input (VOC's void)


class Warp(NamedTuple):
  """One example's transform: the zoom, the shift in output pixels `(t_x, t_y)`, the flip."""

  zoom: jax.Array
  shift: jax.Array
  flip: jax.Array


def draw_warp(key: jax.Array, height: int, width: int, zoom_range: tuple[float, float]) -> Warp:
  k_zoom, k_shift, k_flip = jax.random.split(key, 3)
  lo, hi = jnp.log(zoom_range[0]), jnp.log(zoom_range[1])
  zoom = jnp.exp(jax.random.uniform(k_zoom, (), minval=lo, maxval=hi))
  size = jnp.array([width, height], jnp.float32)
  shift = jax.random.uniform(k_shift, (2,)) * (size - zoom * size)
  return Warp(zoom, shift, jax.random.bernoulli(k_flip))


def _source_coordinates(warp: Warp, height: int, width: int) -> jax.Array:
  """For every output pixel, the input position its centre comes from, as array indices (2, H, W)."""
  rows, cols = jnp.meshgrid(jnp.arange(height) + 0.5, jnp.arange(width) + 0.5, indexing="ij")
  cols = jnp.where(warp.flip, width - cols, cols)
  x = (cols - warp.shift[0]) / warp.zoom - 0.5
  y = (rows - warp.shift[1]) / warp.zoom - 0.5
  return jnp.stack([y, x])


def warp_image(warp: Warp, image: jax.Array) -> jax.Array:
  """An image (H, W, C), bilinear, 0 outside."""
  height, width = image.shape[:2]
  coords = _source_coordinates(warp, height, width)
  channel = lambda c: jax.scipy.ndimage.map_coordinates(c, list(coords), order=1, cval=0.0)
  return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)


def warp_mask(warp: Warp, mask: jax.Array) -> jax.Array:
  """A label mask (H, W), nearest pixel, the ignore label outside."""
  coords = _source_coordinates(warp, *mask.shape)
  out = jax.scipy.ndimage.map_coordinates(
    mask.astype(jnp.int32), list(coords), order=0, cval=IGNORE_LABEL
  )
  return out.astype(mask.dtype)


def warp_boxes(warp: Warp, truth: jax.Array, height: int, width: int) -> jax.Array:
  """Ground truth rows `(x0, y0, x1, y1, class, ...)`, boxes as fractions of the image; unused
  rows (class -1) stay unused, boxes mostly pushed out of the image become unused."""
  size = jnp.array([width, height], jnp.float32)
  shift = warp.shift / size
  lo = truth[:, 0:2] * warp.zoom + shift
  hi = truth[:, 2:4] * warp.zoom + shift
  x0 = jnp.where(warp.flip, 1.0 - hi[:, 0], lo[:, 0])
  x1 = jnp.where(warp.flip, 1.0 - lo[:, 0], hi[:, 0])
  boxes = jnp.stack([x0, lo[:, 1], x1, hi[:, 1]], -1)
  clipped = jnp.clip(boxes, 0.0, 1.0)
  area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  keep = (truth[:, 4] >= 0) & (area(clipped) > 0) & (area(clipped) >= MIN_BOX_VISIBLE * area(boxes))
  rows = jnp.concatenate([clipped, truth[:, 4:]], -1)
  unused = jnp.zeros_like(rows).at[:, 4].set(-1.0)
  return jnp.where(keep[:, None], rows, unused)


def _batch(per_example, keys, images, labels, zoom_range):
  height, width = images.shape[1:3]

  def one(key, image, label):
    warp = draw_warp(key, height, width, zoom_range)
    return warp_image(warp, image), per_example(warp, label, height, width)

  return jax.vmap(one)(keys, images, labels)


def detection_batch(
  keys: jax.Array, images: jax.Array, truth: jax.Array, zoom_range: tuple[float, float]
) -> tuple[jax.Array, jax.Array]:
  """Images (B, H, W, C) and their ground truth (B, M, 5 or more), one key per example."""
  return _batch(warp_boxes, keys, images, truth, zoom_range)


def segmentation_batch(
  keys: jax.Array, images: jax.Array, masks: jax.Array, zoom_range: tuple[float, float]
) -> tuple[jax.Array, jax.Array]:
  """Images (B, H, W, C) and their masks (B, H, W), one key per example."""
  return _batch(lambda warp, mask, *_: warp_mask(warp, mask), keys, images, masks, zoom_range)
