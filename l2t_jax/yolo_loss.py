"""The YOLO-v3 loss, standard or with its binary terms scored by the DLN.

Targets: every image's ground truth is an array `(M, 5)` of boxes `(x0, y0, x1, y1)` as fractions
of the image side and a class (-1 for unused rows). Each box is assigned to one anchor: of the
nine (`layout.shapes`), the one whose shape (width and height, centred together) overlaps it
best, at that anchor's scale, in the cell that holds the box's centre. That anchor is
*responsible* for the box; its targets are the centre's offset in the cell `(g_x, g_y)` in
[0, 1), the log-ratios of the box's size to the anchor's `(g_w, g_h)`, objectness 1 and the box's
class. Every other anchor has objectness target 0, except that one whose predicted box already
overlaps some ground-truth box by more than `IGNORE_IOU` is left out of the objectness term (it
is neither rewarded nor punished).

The loss of a batch is the mean over its images of the sum of three terms:
- box regression, for responsible anchors: binary cross-entropy of `sigmoid(t_x), sigmoid(t_y)`
  against `(g_x, g_y)` plus half the squared error of `(t_w, t_h)` against `(g_w, g_h)`, both
  weighted by `2 - w h` (small boxes count more);
- objectness: binary cross-entropy of the objectness logit of every counted anchor;
- classes: binary cross-entropy of every class logit of the responsible anchors (one-vs-all
  sigmoids, as YOLO-v3 has, against the one-hot class).

The DLN version (our design; the paper's supplement lists the loss terms but the authors' public
code has no detection): the objectness and class terms are binary decisions with hard 0/1 targets,
exactly the items the DLN scores, so each is scored by the DLN through
`item_losses.binary_items` (with cross-entropy's scorer, `item_losses.ce_items`, this *is* the
standard loss; with the `ce_residual` DLN at initialisation, too). The box term keeps its
regression form: its targets are continuous offsets, not binary labels, so they are not items of
the 1-vs-1 transformation, and a learned loss there could move the boxes away from their
geometry, which the metric (IoU) measures directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from l2t_jax.item_losses import ItemScorer, binary_items, ce_items
from l2t_jax.students.yolo import ANCHORS_PER_SCALE, BOX_OUTPUTS, AnchorLayout, shape_iou

IGNORE_IOU = 0.5  # an unassigned anchor whose prediction overlaps a box more than this is ignored
BOX_WEIGHT_BASE = 2.0  # the box term's weight is 2 - w h (w, h fractions of the image)


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """IoU of boxes `a` (..., K, 4) with `b` (..., M, 4), `(x0, y0, x1, y1)`: (..., K, M)."""
  a, b = a[..., :, None, :], b[..., None, :, :]
  w = jnp.clip(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0)
  h = jnp.clip(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0)
  inter = w * h
  union = (
    (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    - inter
  )
  return inter / jnp.maximum(union, jnp.finfo(inter.dtype).tiny)


def decode_boxes(outputs: jax.Array, layout: AnchorLayout) -> jax.Array:
  """Predicted boxes `(..., N, 4)` as `(x0, y0, x1, y1)` fractions of the image."""
  centre = (layout.cells + jax.nn.sigmoid(outputs[..., 0:2])) / layout.grid
  size = layout.anchors * jnp.exp(jnp.clip(outputs[..., 2:4], -10.0, 10.0))
  return jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def assign(truth: jax.Array, layout: AnchorLayout) -> dict:
  """One image's targets per anchor (module docstring) from its ground truth `(M, 5)`:
  `responsible` (N,) bool, `offsets` (N, 2), `log_size` (N, 2), `weight` (N,), `label` (N,)."""
  n = layout.cells.shape[0]
  boxes, cls = truth[:, :4], truth[:, 4]
  valid = cls >= 0
  wh = jnp.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6)
  centre = (boxes[:, :2] + boxes[:, 2:]) / 2
  anchors = jnp.asarray(layout.shapes)
  best = jnp.argmax(shape_iou(wh, anchors, jnp), -1)  # (M,) anchor id 0..8
  # The flattened index of (best anchor's scale, centre cell, anchor) for every box.
  per_scale = jnp.asarray(layout.offsets[:-1])
  scale_grid = jnp.asarray(layout.grid[layout.offsets[:-1]])  # (S, 2): columns, rows per scale
  s = best // ANCHORS_PER_SCALE
  grid = scale_grid[s]
  cell = jnp.clip(jnp.floor(centre * grid), 0, grid - 1)
  position = (cell[:, 1] * grid[:, 0] + cell[:, 0]) * ANCHORS_PER_SCALE
  index = per_scale[s] + (position + best % ANCHORS_PER_SCALE).astype(jnp.int32)
  index = jnp.where(valid, index, n)  # unused rows fall outside and are dropped
  offsets = centre * grid - cell
  log_size = jnp.log(wh / anchors[best])
  return {
    "responsible": jnp.zeros((n,), bool).at[index].set(True, mode="drop"),
    "offsets": jnp.zeros((n, 2)).at[index].set(offsets, mode="drop"),
    "log_size": jnp.zeros((n, 2)).at[index].set(log_size, mode="drop"),
    "weight": jnp.zeros((n,)).at[index].set(BOX_WEIGHT_BASE - wh[:, 0] * wh[:, 1], mode="drop"),
    "label": jnp.zeros((n,), jnp.int32).at[index].set(cls.astype(jnp.int32), mode="drop"),
  }


def yolo_loss(
  outputs: jax.Array,
  truth: jax.Array,
  layout: AnchorLayout,
  score: ItemScorer = ce_items,
  terms: bool = False,
):
  """The loss of raw outputs `(B, N, 5 + C)` against ground truth `(B, M, 5)`: the mean over
  images of box + objectness + class terms, the binary terms scored by `score` (`ce_items`: the
  standard YOLO-v3 loss). `terms=True` returns the three batch means as a dict instead."""
  num_classes = outputs.shape[-1] - BOX_OUTPUTS
  t = jax.vmap(lambda g: assign(g, layout))(truth)
  resp = t["responsible"].astype(outputs.dtype)
  xy = optax.sigmoid_binary_cross_entropy(outputs[..., 0:2], t["offsets"]).sum(-1)
  wh = 0.5 * jnp.square(outputs[..., 2:4] - t["log_size"]).sum(-1)
  box = (resp * t["weight"] * (xy + wh)).sum(-1)

  predicted = jax.lax.stop_gradient(decode_boxes(outputs, layout))
  overlap = pairwise_iou(predicted, truth[..., :4])
  overlap = jnp.where((truth[..., 4] >= 0)[:, None, :], overlap, 0.0).max(-1)
  counted = (t["responsible"] | (overlap <= IGNORE_IOU)).astype(outputs.dtype)
  obj = (counted * binary_items(score, outputs[..., 4], t["responsible"])).sum(-1)

  one_hot = jax.nn.one_hot(t["label"], num_classes, dtype=jnp.int32)
  cls = (resp * binary_items(score, outputs[..., BOX_OUTPUTS:], one_hot).sum(-1)).sum(-1)
  if terms:
    return {"box": box.mean(), "objectness": obj.mean(), "class": cls.mean()}
  return (box + obj + cls).mean()
