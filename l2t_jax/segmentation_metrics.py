"""Semantic segmentation metrics: the confusion matrix over pixels, and the mean IoU read from it.

Pixels whose target is the ignore label (VOC's 255, object outlines and "void") count nowhere. The
confusion matrix is summed over a whole split batch by batch (`confusion_matrix` is a pure jnp
function, jitted on the device); IoU of class c is `C[c, c] / (row c + column c - C[c, c])`
(rows: targets, columns: predictions), and the mean IoU averages it over the classes that occur
in the targets or the predictions (a class absent from both has no IoU), as VOC does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

IGNORE_LABEL = 255


def confusion_matrix(
  predictions: jax.Array,
  targets: jax.Array,
  num_classes: int,
  ignore_label: int = IGNORE_LABEL,
  weights: jax.Array | None = None,
) -> jax.Array:
  """`(num_classes, num_classes)` int32 counts of pixels by (target, prediction); pixels with the
  ignore label (or, with `weights`, zero weight: e.g. padded examples) are left out."""
  t = jnp.asarray(targets).astype(jnp.int32).reshape(-1)
  p = jnp.asarray(predictions).astype(jnp.int32).reshape(-1)
  keep = (t != ignore_label) & (t >= 0) & (t < num_classes)
  if weights is not None:
    keep &= jnp.broadcast_to(jnp.asarray(weights), jnp.shape(targets)).reshape(-1) > 0
  index = jnp.where(keep, t * num_classes + jnp.clip(p, 0, num_classes - 1), 0)
  counts = jnp.bincount(index, weights=keep.astype(jnp.int32), length=num_classes * num_classes)
  return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
  """IoU per class, NaN for a class found in neither targets nor predictions."""
  c = np.asarray(confusion, np.float64)
  inter = np.diag(c)
  union = c.sum(0) + c.sum(1) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
  """The mean of `class_iou` over the classes that have one (NaN when none has)."""
  iou = class_iou(confusion)
  return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
  """The fraction of counted pixels labelled right."""
  c = np.asarray(confusion, np.float64)
  return float(np.trace(c) / c.sum()) if c.sum() else float("nan")
