"""PASCAL VOC detection metrics: average precision per class at an IoU threshold, and its mean.

The VOC protocol, per class: the detections of every image are ranked by score; each, in turn, is
a true positive when its best-overlapping ground-truth box of the class in its image has IoU above
`iou_threshold` (0.5; strictly, as in the VOC devkit) and was not matched before, else a false
positive; a detection whose best
match is a box marked *difficult* counts as neither. Recall is over the non-difficult boxes.
AP is then
- `area` (VOC 2010 and later): the area under the precision-recall curve made monotone (each
  precision replaced by the best at any higher recall);
- `11point` (VOC 2007): the mean over recall r in {0, 0.1, ..., 1} of the best precision at a
  recall >= r;
- `interpolated_ap(recall, precision, 101)` gives COCO's 101-point variant, which the tests use to
  check this module against pycocotools.
mAP is the mean over the classes that have at least one non-difficult box.

Boxes are `(x0, y0, x1, y1)` in continuous coordinates: a box's area is `(x1 - x0) * (y1 - y0)`,
without the VOC devkit's "+1" of inclusive pixel indices (pycocotools' convention, and the one
that does not depend on the image's resolution). All of it is numpy, run on the host after the
detections are decoded on the device.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

AP_METHODS = ("area", "11point")
VOC07_POINTS = 11


class Detections(NamedTuple):
  """One image's detections: boxes (K, 4), scores (K,), classes (K,)."""

  boxes: np.ndarray
  scores: np.ndarray
  classes: np.ndarray


class GroundTruth(NamedTuple):
  """One image's annotated objects: boxes (M, 4), classes (M,), difficult (M,) bool."""

  boxes: np.ndarray
  classes: np.ndarray
  difficult: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of every box of `a` (K, 4) with every box of `b` (M, 4): (K, M)."""
  a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
  w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = w * h
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  union = area_a + area_b - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_class(
  detections: Sequence[Detections], truths: Sequence[GroundTruth], cls: int, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
  """`(scores, is_true_positive, positives)` of class `cls` over all images: the scores and
  verdicts of the counted detections (those matched to a difficult box left out), ranked by
  score, and the number of non-difficult ground-truth boxes."""
  gt_boxes, gt_difficult = [], []
  for gt in truths:
    of_class = np.asarray(gt.classes) == cls
    gt_boxes.append(np.asarray(gt.boxes, np.float64).reshape(-1, 4)[of_class])
    gt_difficult.append(np.asarray(gt.difficult, bool)[of_class])
  positives = int(sum((~d).sum() for d in gt_difficult))
  picks = [np.asarray(d.classes) == cls for d in detections]
  scores = np.concatenate([np.asarray(d.scores, np.float64)[k] for d, k in zip(detections, picks)])
  boxes = np.concatenate(
    [np.asarray(d.boxes, np.float64).reshape(-1, 4)[k] for d, k in zip(detections, picks)]
  )
  images = np.concatenate([np.full(k.sum(), i) for i, k in enumerate(picks)]).astype(int)
  matched = [np.zeros(len(b), bool) for b in gt_boxes]
  order = np.argsort(-scores, kind="stable")
  verdicts = np.zeros(len(order), np.int8)  # 1: true positive, 0: false, -1: not counted
  for rank, i in enumerate(order):
    image = images[i]
    if len(gt_boxes[image]) == 0:
      continue
    ious = box_iou(boxes[i : i + 1], gt_boxes[image])[0]
    best = int(np.argmax(ious))
    if ious[best] <= iou_threshold:  # the devkit's rule: the overlap must exceed it
      continue
    if gt_difficult[image][best]:
      verdicts[rank] = -1
    elif not matched[image][best]:
      matched[image][best] = True
      verdicts[rank] = 1
    # else: a duplicate of a box already found, a false positive
  counted = verdicts >= 0
  return scores[order][counted], verdicts[counted] == 1, positives


def precision_recall(is_tp: np.ndarray, positives: int) -> tuple[np.ndarray, np.ndarray]:
  """Precision and recall after each of the ranked detections."""
  tp = np.cumsum(is_tp, dtype=np.float64)
  fp = np.cumsum(~is_tp, dtype=np.float64)
  return tp / np.maximum(tp + fp, np.finfo(np.float64).tiny), tp / max(positives, 1)


def area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
  """The area under the monotone precision-recall curve (VOC 2010+)."""
  r = np.concatenate([[0.0], recall, [1.0]])
  p = np.concatenate([[0.0], precision, [0.0]])
  p = np.maximum.accumulate(p[::-1])[::-1]
  steps = np.nonzero(r[1:] != r[:-1])[0]
  return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def interpolated_ap(recall: np.ndarray, precision: np.ndarray, points: int) -> float:
  """The mean over `points` evenly spaced recall levels in [0, 1] of the best precision at a
  recall at least that level (0 where none reaches it): VOC 2007 with 11, COCO with 101."""
  levels = np.linspace(0.0, 1.0, points)
  best = [precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in levels]
  return float(np.mean(best))


def average_precision(
  detections: Sequence[Detections],
  truths: Sequence[GroundTruth],
  cls: int,
  iou_threshold: float = 0.5,
  method: str = "area",
) -> float:
  """AP of class `cls` (NaN when it has no non-difficult box)."""
  if method not in AP_METHODS:
    raise ValueError(f"AP method '{method}' is not one of {AP_METHODS}")
  _, is_tp, positives = match_class(detections, truths, cls, iou_threshold)
  if positives == 0:
    return float("nan")
  precision, recall = precision_recall(is_tp, positives)
  if method == "area":
    return area_ap(recall, precision)
  return interpolated_ap(recall, precision, VOC07_POINTS)


def mean_average_precision(
  detections: Sequence[Detections],
  truths: Sequence[GroundTruth],
  num_classes: int,
  iou_threshold: float = 0.5,
  method: str = "area",
) -> tuple[float, np.ndarray]:
  """`(mAP, AP per class)`: the mean over the classes with a non-difficult box."""
  if len(detections) != len(truths):
    raise ValueError(f"{len(detections)} images of detections but {len(truths)} of ground truth")
  aps = np.array(
    [average_precision(detections, truths, c, iou_threshold, method) for c in range(num_classes)]
  )
  return (float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")), aps
