"""Losses of dense predictions written as sums of 1-vs-1 items, so that the DLN can score them.

An *item scorer* is a function `(logits, labels) -> values` of logits shaped `(..., C)` and integer
labels shaped `(...)` that gives one value per (position, class) item, shaped like the logits:
- `ce_items`: the standard loss, `-y_c log softmax(z)_c`; its sum over classes is cross-entropy;
- the DLN's, `functools.partial(dln.item_values, phi)` (any item kind and network) or, tabulated,
  `functools.partial(dln_table.table_item_values, table)`.
A student whose standard loss is cross-entropy per pixel (segmentation) sums a scorer's values over
classes per pixel; one whose standard loss is a set of binary cross-entropies (YOLO's objectness
and per-class scores) scores each binary decision as a two-class item pair (`binary_items`). At
initialisation the `ce_residual` DLN's values equal `ce_items`', so a student trained on the DLN
starts on exactly its standard loss.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ItemScorer = Callable[[jax.Array, jax.Array], jax.Array]


def ce_items(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy's items: `-y_c log p_c`, shaped like `logits`."""
  y = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return -y * jax.nn.log_softmax(logits)


def binary_items(score: ItemScorer, z: jax.Array, y: jax.Array) -> jax.Array:
  """The value of every binary decision with logit `z` and target `y` in {0, 1} (same shapes):
  the sum of the scorer's two items of the two-class logits `(-z/2, z/2)`, whose softmax is
  `(1 - sigmoid(z), sigmoid(z))`. With `ce_items` this is exactly the binary cross-entropy
  `-y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))`. (Symmetric logits, rather than `(0, z)`,
  give the DLN's one_vs_one items, which see the two sigmoids `sigmoid(+-z/2)`, a symmetric view.)
  """
  pair = jnp.stack([-0.5 * z, 0.5 * z], axis=-1)
  return score(pair, y.astype(jnp.int32)).sum(-1)


def masked_pixel_loss(
  score: ItemScorer, logits: jax.Array, labels: jax.Array, ignore_label: int
) -> jax.Array:
  """Per-pixel loss of logits `(B, H, W, C)` against labels `(B, H, W)`: the sum over classes of
  each pixel's item values, pixels labelled `ignore_label` adding nothing, averaged over all
  `B * H * W` pixel positions. (A fixed denominator, not the number of labelled pixels: the loss
  is then a plain mean over examples, so a data-parallel batch split over devices gives the same
  gradient as the whole batch on one.)"""
  keep = labels != ignore_label
  safe = jnp.where(keep, labels, 0).astype(jnp.int32)
  per_pixel = score(logits, safe).sum(-1)
  return jnp.where(keep, per_pixel, 0.0).mean()
