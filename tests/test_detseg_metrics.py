"""VOC mAP@0.5 on hand-computed cases and against pycocotools; mean IoU on hand cases."""

import contextlib
import io

import jax
import numpy as np
import pytest

from l2t_jax import segmentation_metrics as seg
from l2t_jax.detection_metrics import (
  Detections,
  GroundTruth,
  average_precision,
  box_iou,
  interpolated_ap,
  match_class,
  mean_average_precision,
  precision_recall,
)


def truth(boxes, classes, difficult=None):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult)
  return GroundTruth(boxes, np.asarray(classes, int), difficult)


def dets(boxes, scores, classes):
  return Detections(
    np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores), np.asarray(classes, int)
  )


GT = truth([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])


def test_iou_of_boxes_by_hand():
  np.testing.assert_allclose(
    box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]), [[1 / 7, 1.0, 0.0]]
  )


def test_ap_by_hand_true_false_true():
  # Ranked: a hit (P 1, R .5), a miss (P .5, R .5), the second hit (P 2/3, R 1).
  d = dets([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], [0, 0, 0])
  assert average_precision([d], [GT], 0) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  # VOC 2007: recall levels 0..0.5 have precision 1, levels 0.6..1 have 2/3.
  assert average_precision([d], [GT], 0, method="11point") == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_a_duplicate_is_a_false_positive_and_a_difficult_match_counts_nowhere():
  d = dets([[0, 0, 10, 10], [0, 0, 10, 11]], [0.9, 0.8], [0, 0])
  assert average_precision([d], [GT], 0) == pytest.approx(0.5)
  assert average_precision([d], [GT], 0, method="11point") == pytest.approx(6 / 11)
  hard = truth(GT.boxes, [0, 0], difficult=[False, True])
  d = dets([[20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])
  scores, is_tp, positives = match_class([d], [hard], 0, 0.5)
  np.testing.assert_array_equal(scores, [0.8])  # the difficult box's detection is not counted
  assert is_tp.tolist() == [True] and positives == 1
  assert average_precision([d], [hard], 0) == pytest.approx(1.0)


def test_iou_must_exceed_the_threshold_and_classes_and_images_stay_apart():
  half = dets([[0, 0, 20, 10]], [0.9], [0])  # IoU exactly 0.5 with the first box: a miss (VOC)
  assert average_precision([half], [GT], 0) == 0.0
  other_class = dets([[0, 0, 10, 10]], [0.9], [1])
  assert average_precision([other_class], [GT], 0) == 0.0
  other_image = [dets([], [], []), dets([[0, 0, 10, 10]], [0.9], [0])]
  assert average_precision(other_image, [GT, truth([], [])], 0) == 0.0
  m, aps = mean_average_precision([dets([[0, 0, 10, 10]], [0.9], [0])], [GT], num_classes=3)
  assert np.isnan(aps[1:]).all() and m == aps[0] == pytest.approx(0.5)  # classes without boxes


def test_precision_recall_and_interpolation_by_hand():
  p, r = precision_recall(np.array([True, False, True, False]), positives=4)
  np.testing.assert_allclose(p, [1, 0.5, 2 / 3, 0.5])
  np.testing.assert_allclose(r, [0.25, 0.25, 0.5, 0.5])
  assert interpolated_ap(r, p, 11) == pytest.approx((3 * 1 + 3 * 2 / 3) / 11)


def random_case(rng, images, classes):
  """Ground truth on a coarse grid (boxes far apart, so VOC's and COCO's matching rules agree:
  they differ only when a detection overlaps two boxes), and detections: jittered copies (some
  too far off to match), duplicates and random boxes, with distinct scores."""
  truths, detections = [], []
  for _ in range(images):
    cells = rng.choice(16, size=rng.integers(1, 6), replace=False)
    xy = np.stack([cells % 4, cells // 4], -1) * 50.0 + rng.uniform(0, 10, (len(cells), 2))
    wh = rng.uniform(10, 30, (len(cells), 2))
    boxes = np.concatenate([xy, xy + wh], -1)
    cls = rng.integers(0, classes, len(cells))
    truths.append(truth(boxes, cls))
    jitter = rng.normal(0, 0.15, boxes.shape) * np.tile(wh, 2)
    found = rng.random(len(boxes)) < 0.8
    copies = (boxes + jitter)[found]
    copy_cls = np.where(rng.random(found.sum()) < 0.9, cls[found], rng.integers(0, classes))
    dup = rng.random(len(copies)) < 0.3
    noise_xy = rng.uniform(0, 200, (rng.integers(0, 4), 2))
    noise = np.concatenate([noise_xy, noise_xy + rng.uniform(5, 30, noise_xy.shape)], -1)
    all_boxes = np.concatenate([copies, copies[dup] + 1.0, noise])
    all_cls = np.concatenate([copy_cls, copy_cls[dup], rng.integers(0, classes, len(noise))])
    detections.append(dets(all_boxes, rng.permutation(len(all_boxes)) + rng.random(), all_cls))
  return detections, truths


def coco_ap101(detections, truths, classes):
  """AP@0.5 per class from pycocotools (101 recall points), -1 where a class has no box."""
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  def xywh(b):
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

  annotations, results = [], []
  for i, (d, g) in enumerate(zip(detections, truths)):
    for b, c in zip(g.boxes, g.classes):
      annotations.append(
        {
          "id": len(annotations) + 1,
          "image_id": i,
          "category_id": int(c),
          "bbox": xywh(b),
          "area": xywh(b)[2] * xywh(b)[3],
          "iscrowd": 0,
        }
      )
    for b, s, c in zip(d.boxes, d.scores, d.classes):
      results.append({"image_id": i, "category_id": int(c), "bbox": xywh(b), "score": float(s)})
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = {
      "images": [{"id": i} for i in range(len(truths))],
      "annotations": annotations,
      "categories": [{"id": c} for c in range(classes)],
    }
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.maxDets = [1000]
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.evaluate()
    ev.accumulate()
  precision = ev.eval["precision"][0, :, :, 0, 0]  # (101 recall levels, classes)
  return np.where((precision >= 0).all(0), precision.mean(0), -1.0)


@pytest.mark.parametrize("seed", range(4))
def test_ap_agrees_with_pycocotools(seed):
  pytest.importorskip("pycocotools")
  rng = np.random.default_rng(seed)
  detections, truths = random_case(rng, images=12, classes=3)
  expected = coco_ap101(detections, truths, 3)
  for c in range(3):
    _, is_tp, positives = match_class(detections, truths, c, 0.5)
    if positives == 0:
      assert expected[c] == -1
      continue
    precision, recall = precision_recall(is_tp, positives)
    assert interpolated_ap(recall, precision, 101) == pytest.approx(expected[c], abs=1e-9)
    assert 0.1 < expected[c] < 1.0  # the cases are neither trivial nor hopeless


def test_confusion_matrix_and_mean_iou_by_hand():
  targets = np.array([[0, 0, 1], [1, 255, 2]])
  predictions = np.array([[0, 1, 1], [1, 2, 2]])
  c = np.asarray(jax.jit(seg.confusion_matrix, static_argnums=2)(predictions, targets, 4))
  np.testing.assert_array_equal(c, [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(seg.class_iou(c)[:3], [1 / 2, 2 / 3, 1.0])
  assert np.isnan(seg.class_iou(c)[3])  # in neither: no IoU, left out of the mean
  assert seg.mean_iou(c) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
  assert seg.pixel_accuracy(c) == pytest.approx(4 / 5)
  # A class only predicted has IoU 0 and counts; weights leave out padded examples.
  c2 = seg.confusion_matrix(np.array([3, 0]), np.array([0, 0]), 4)
  assert seg.mean_iou(c2) == pytest.approx((0.5 + 0.0) / 2)
  c3 = seg.confusion_matrix(predictions, targets, 4, weights=np.array([[1], [0]]))
  np.testing.assert_array_equal(np.asarray(c3).sum(), 3)
