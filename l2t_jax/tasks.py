"""Detection and segmentation as tasks of the same driver as the classifiers.

A `Task` says what a student's outputs and labels mean: its standard loss (the `ce` method and the
teacher's validation objective), its loss under any item scorer (`item_losses`: the DLN's items,
exact or tabulated, for `l2t_dln`), the two numbers logged at every step in place of
cross-entropy and accuracy, and its evaluation over a whole split, whose `accuracy` is the task's
metric:
- detection (YOLO-v3 on boxes packed as `(M, 5)` per image, see `data.shapes.detection_targets`,
  or `(M, 6)` with VOC's difficult flag, see `data.voc`):
  the YOLO-v3 loss; step accuracy is the share of responsible anchors whose best class is right;
  evaluation decodes, suppresses and scores VOC mAP@0.5 (area; the 11-point value beside it);
- segmentation (masks with the ignore label 255): per-pixel cross-entropy; step accuracy is the
  pixel accuracy; evaluation is the mean IoU over the whole split at full resolution.
Classification keeps its own code paths (no task). `l2t_jax.build.make_task` picks the task of
a config; `task_loss` puts a learned loss's items under a task's loss.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l2t_jax.detection_metrics import Detections, GroundTruth, mean_average_precision
from l2t_jax.item_losses import ItemScorer, ce_items, masked_pixel_loss
from l2t_jax.segmentation_metrics import IGNORE_LABEL, confusion_matrix, mean_iou, pixel_accuracy
from l2t_jax.student_loss import FunctionLoss, StudentLoss
from l2t_jax.students import Student
from l2t_jax.students.yolo import BOX_OUTPUTS, AnchorLayout
from l2t_jax.yolo_decode import make_detector
from l2t_jax.yolo_loss import assign, yolo_loss

Loss = Callable[[jax.Array, jax.Array], jax.Array]
DIFFICULT_COLUMN = 5  # truth rows (x0, y0, x1, y1, class[, difficult]): VOC's difficult flag


class Task(NamedTuple):
  name: str
  loss_with: Callable[[ItemScorer], Loss]  # the task's loss with the binary / pixel items scored
  stats: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]  # (standard loss, acc)
  make_evaluator: Callable[[Student, int], Callable]  # (student, batch size) -> evaluate

  @property
  def standard_loss(self) -> Loss:
    return self.loss_with(ce_items)


def task_loss(task: Task, items: StudentLoss) -> FunctionLoss:
  """The learned loss of `task`: its items scored by `items` (the DLN, exact or tabulated once
  per segment), in `StudentLoss`'s shape for `methods.dln_method`."""

  def loss(tabulated, outputs, labels):
    return task.loss_with(functools.partial(items.item_values, tabulated))(outputs, labels)

  return FunctionLoss(items.init, loss, items.tabulate)


def _padded_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
  """`(x, y, mask)` batches of exactly `batch_size` covering the split (the last one padded), so
  that one compilation serves every split."""
  n = len(x)
  pad = (-n) % batch_size
  xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
  yp = np.concatenate([y, np.repeat(y[:1], pad, axis=0)]) if pad else y
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  for i in range(0, n + pad, batch_size):
    yield xp[i : i + batch_size], yp[i : i + batch_size], mask[i : i + batch_size]


def _difficult(truth: np.ndarray) -> np.ndarray:
  """The VOC `difficult` flags of truth rows: their sixth column where there is one."""
  if truth.shape[-1] > DIFFICULT_COLUMN:
    return truth[:, DIFFICULT_COLUMN] > 0
  return np.zeros(len(truth), bool)


def _share(hits: jax.Array, counted: jax.Array, axis_name: str | None) -> jax.Array:
  """`hits.sum() / counted.sum()` over the whole batch: with `axis_name`, summed over the devices
  first (the mean of the devices' own ratios would weigh their counts wrongly)."""
  both = jnp.stack([hits.sum(), counted.sum()]).astype(jnp.int32)
  if axis_name:
    both = jax.lax.psum(both, axis_name)
  return both[0] / jnp.maximum(both[1], 1)


def detection_task(
  layout: AnchorLayout, num_classes: int, height: int, width: int, axis_name: str | None = None
) -> Task:
  """Boxes are scored in pixels of `height` x `width` images. `axis_name`: the device axis of a
  data-parallel run, over which the step accuracy is counted."""
  pixels = np.array([width, height, width, height], np.float32)

  def loss_with(score):
    return lambda outputs, labels: yolo_loss(outputs, labels, layout, score)

  def stats(outputs, labels):
    t = jax.vmap(lambda g: assign(g, layout))(labels)
    right = jnp.argmax(outputs[..., BOX_OUTPUTS:], -1) == t["label"]
    hits = _share(right & t["responsible"], t["responsible"], axis_name)
    return yolo_loss(outputs, labels, layout), hits

  def make_evaluator(student: Student, batch_size: int):
    detect = make_detector(layout)

    @jax.jit
    def run(params, model_state, x, y, mask):
      outputs, _ = student.apply(params, model_state, x, False)
      per_image = jax.vmap(lambda o, g: yolo_loss(o[None], g[None], layout))(outputs, y)
      return detect(outputs), jnp.sum(mask * per_image)

    def evaluate(params, model_state, x, y):
      if len(x) == 0:
        return {"accuracy": math.nan, "loss": math.nan, "map_11point": math.nan}
      detections, truths, total = [], [], 0.0
      for xb, yb, mb in _padded_batches(x, y, batch_size):
        found, loss_sum = jax.device_get(run(params, model_state, xb, yb, mb))
        total += float(loss_sum)
        for i in np.nonzero(mb)[0]:
          keep = found.valid[i]
          detections.append(
            Detections(found.boxes[i][keep] * pixels, found.scores[i][keep], found.classes[i][keep])
          )
          real = yb[i][:, 4] >= 0
          truths.append(
            GroundTruth(
              yb[i][real, :4] * pixels, yb[i][real, 4].astype(int), _difficult(yb[i][real])
            )
          )
      area, _ = mean_average_precision(detections, truths, num_classes, method="area")
      voc07, _ = mean_average_precision(detections, truths, num_classes, method="11point")
      return {"accuracy": area, "loss": total / len(x), "map_11point": voc07}

    return evaluate

  return Task("detection", loss_with, stats, make_evaluator)


def segmentation_task(num_classes: int, axis_name: str | None = None) -> Task:
  """`axis_name`: as `detection_task`'s."""

  def loss_with(score):
    return lambda logits, labels: masked_pixel_loss(score, logits, labels, IGNORE_LABEL)

  def stats(logits, labels):
    keep = labels != IGNORE_LABEL
    right = (jnp.argmax(logits, -1) == labels) & keep
    return (
      masked_pixel_loss(ce_items, logits, labels, IGNORE_LABEL),
      _share(right, keep, axis_name),
    )

  def make_evaluator(student: Student, batch_size: int):
    @jax.jit
    def run(params, model_state, x, y, mask):
      logits, _ = student.apply(params, model_state, x, False)
      per_image = jax.vmap(
        lambda z, t: masked_pixel_loss(ce_items, z[None], t[None], IGNORE_LABEL)
      )(logits, y)
      confusion = confusion_matrix(
        jnp.argmax(logits, -1), y, num_classes, weights=mask[:, None, None]
      )
      return confusion, jnp.sum(mask * per_image)

    def evaluate(params, model_state, x, y):
      if len(x) == 0:
        return {"accuracy": math.nan, "loss": math.nan, "pixel_accuracy": math.nan}
      confusion, total = np.zeros((num_classes, num_classes), np.int64), 0.0
      for xb, yb, mb in _padded_batches(x, y, batch_size):
        c, loss_sum = jax.device_get(run(params, model_state, xb, yb, mb))
        confusion += c
        total += float(loss_sum)
      return {
        "accuracy": mean_iou(confusion),
        "loss": total / len(x),
        "pixel_accuracy": pixel_accuracy(confusion),
      }

    return evaluate

  return Task("segmentation", loss_with, stats, make_evaluator)
