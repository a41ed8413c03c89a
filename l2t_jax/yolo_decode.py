"""From YOLO-v3's raw outputs to detections: decoding and non-maximum suppression, as pure jitted
functions with fixed output shapes (so that a whole batch runs on the device in one program).

Each anchor proposes its decoded box with its best class, scored `sigmoid(objectness) *
sigmoid(class logit)`. Of the `pre_nms` best-scored proposals above `score_threshold`, greedy
non-maximum suppression per class keeps a box unless a better-scored kept box of the same class
overlaps it by more than `iou_threshold`; the first `max_detections` kept boxes are returned,
padded, with a validity mask. The defaults are the usual evaluation settings of YOLO-v3 on VOC (a
low score threshold, so that the precision-recall curve reaches far; NMS at IoU 0.45).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2t_jax.students.yolo import BOX_OUTPUTS, AnchorLayout
from l2t_jax.yolo_loss import decode_boxes, pairwise_iou

SCORE_THRESHOLD = 0.005
NMS_IOU = 0.45
PRE_NMS = 400
MAX_DETECTIONS = 100


class Boxes(NamedTuple):
  """Detections per image, padded: boxes (..., K, 4) as fractions of the image, scores (..., K),
  classes (..., K), valid (..., K)."""

  boxes: jax.Array
  scores: jax.Array
  classes: jax.Array
  valid: jax.Array


def proposals(outputs: jax.Array, layout: AnchorLayout) -> Boxes:
  """Every anchor's decoded box, best class and its score, `(B, N, ...)`."""
  boxes = decode_boxes(outputs, layout)
  class_scores = jax.nn.sigmoid(outputs[..., 4:5]) * jax.nn.sigmoid(outputs[..., BOX_OUTPUTS:])
  return Boxes(
    boxes,
    class_scores.max(-1),
    class_scores.argmax(-1).astype(jnp.int32),
    jnp.ones(boxes.shape[:-1], bool),
  )


def nms(
  p: Boxes,
  iou_threshold: float = NMS_IOU,
  score_threshold: float = SCORE_THRESHOLD,
  pre_nms: int = PRE_NMS,
  max_detections: int = MAX_DETECTIONS,
) -> Boxes:
  """Greedy per-class non-maximum suppression of one image's proposals `(N, ...)`."""
  k = min(pre_nms, p.scores.shape[0])
  scores, order = jax.lax.top_k(jnp.where(p.valid, p.scores, -1.0), k)
  boxes, classes = p.boxes[order], p.classes[order]
  candidate = scores > score_threshold
  iou = pairwise_iou(boxes, boxes)
  clash = (iou > iou_threshold) & (classes[:, None] == classes[None, :])
  earlier = jnp.arange(k)[None, :] < jnp.arange(k)[:, None]  # (i, j): j ranks before i

  def visit(i, keep):
    suppressed = jnp.any(keep & clash[i] & earlier[i])
    return keep.at[i].set(candidate[i] & ~suppressed)

  keep = jax.lax.fori_loop(0, k, visit, jnp.zeros((k,), bool))
  # The kept boxes first (in score order), then the rest, cut at max_detections.
  rank = jnp.argsort(~keep, stable=True)[:max_detections]
  pad = max(0, max_detections - k)

  def take(x, fill):
    x = x[rank]
    return jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], fill, x.dtype)]) if pad else x

  return Boxes(take(boxes, 0.0), take(scores, 0.0), take(classes, -1), take(keep, False))


def make_detector(
  layout: AnchorLayout,
  iou_threshold: float = NMS_IOU,
  score_threshold: float = SCORE_THRESHOLD,
  pre_nms: int = PRE_NMS,
  max_detections: int = MAX_DETECTIONS,
):
  """A jitted `detect(outputs) -> Boxes`: the detections of a batch of raw outputs
  `(B, N, 5 + C)` laid out as `layout`, shaped `(B, max_detections, ...)`."""
  per_image = functools.partial(
    nms,
    iou_threshold=iou_threshold,
    score_threshold=score_threshold,
    pre_nms=pre_nms,
    max_detections=max_detections,
  )
  return jax.jit(lambda outputs: jax.vmap(per_image)(proposals(outputs, layout)))
