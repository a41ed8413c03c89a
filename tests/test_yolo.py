"""YOLO-v3: the network's layout, target assignment, the loss (standard and DLN), decoding and
NMS."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2t_jax import dln as dln_lib, dln_table
from l2t_jax.config import default_config
from l2t_jax.data import shapes
from l2t_jax.detection_metrics import Detections, GroundTruth, mean_average_precision
from l2t_jax.item_losses import binary_items, ce_items
from l2t_jax.students import from_linen, yolo
from l2t_jax.yolo_decode import Boxes, make_detector, nms
from l2t_jax.yolo_loss import assign, decode_boxes, yolo_loss

SIZE = 64
LAYOUT = yolo.anchor_layout(SIZE, SIZE)
CLASSES = 3


def truth(rows):
  """Ground truth `(M, 5)` from (x0, y0, x1, y1, class) rows, padded to 4 rows."""
  t = np.zeros((4, 5), np.float32)
  t[:, 4] = -1
  t[: len(rows)] = rows
  return jnp.asarray(t)


def test_layout_counts_every_anchor_of_the_three_scales():
  cells = [(SIZE // s) ** 2 * 3 for s in yolo.STRIDES]
  np.testing.assert_array_equal(LAYOUT.offsets, np.cumsum([0] + cells))
  # The first anchor of the stride-16 scale sits in cell (0, 0) with the fourth standard anchor.
  i = LAYOUT.offsets[1]
  np.testing.assert_array_equal(LAYOUT.cells[i], [0, 0])
  np.testing.assert_allclose(LAYOUT.anchors[i] * 416, yolo.ANCHORS_416[3])
  with pytest.raises(ValueError, match="multiples of 32"):
    yolo.anchor_layout(48, 64)


def test_small_network_outputs_every_anchor_and_darknet53_has_52_convolutions():
  student = from_linen(yolo.YOLOv3(num_classes=CLASSES, blocks=(1, 1, 1, 1, 1), width=4))
  variables = jax.eval_shape(student.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  out, _ = jax.eval_shape(lambda v: student.apply(*v, jnp.zeros((2, 32, 32, 3)), True), variables)
  assert out.shape == (2, yolo.anchor_layout(32, 32).offsets[-1], 5 + CLASSES)
  full = jax.eval_shape(
    lambda: yolo.Darknet(yolo.DARKNET53_BLOCKS, yolo.DARKNET53_WIDTH, nn_norm()).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))
    )
  )
  convs = [
    k
    for k, _ in jax.tree_util.tree_leaves_with_path(full["params"])
    if jax.tree_util.keystr(k).endswith("['kernel']")
  ]
  assert len(convs) == 52  # Darknet-53 is 52 convolutions and the classifier's dense layer


def nn_norm():
  from l2t_jax.students.layers import batch_norm

  return batch_norm(False, 0.9, 1e-5, None)


def test_assignment_inverts_decoding():
  """Outputs that equal the responsible anchor's targets decode back to the box."""
  boxes = [[0.1, 0.2, 0.3, 0.35, 2], [0.4, 0.3, 0.95, 0.9, 0], [0.6, 0.05, 0.7, 0.2, 1]]
  t = jax.jit(lambda g: assign(g, LAYOUT))(truth(boxes))
  assert int(t["responsible"].sum()) == 3
  out = jnp.zeros((LAYOUT.offsets[-1], 4))
  out = out.at[:, :2].set(jax.scipy.special.logit(jnp.clip(t["offsets"], 1e-6, 1 - 1e-6)))
  out = out.at[:, 2:].set(t["log_size"])
  decoded = jax.jit(lambda o: decode_boxes(o, LAYOUT))(out)[t["responsible"]]
  labels = t["label"][t["responsible"]]
  for box in boxes:
    match = np.nonzero(np.asarray(labels) == box[4])[0]
    np.testing.assert_allclose(decoded[match[0]], box[:4], atol=1e-5)
  # The big box goes to the coarsest scale, the small ones to finer scales.
  scale = LAYOUT.scale[np.asarray(t["responsible"])]
  assert scale[np.asarray(labels) == 0][0] == 2 and scale[np.asarray(labels) == 2][0] < 2


@functools.partial(jax.jit, static_argnames=("terms",))
def loss(outputs, gt, phi=None, terms=False):
  """The standard loss, or with `phi` the default DLN's (exact, untabulated)."""
  score = ce_items if phi is None else functools.partial(DLN.item_values, phi)
  return yolo_loss(outputs, gt, LAYOUT, score, terms)


DLN = dln_lib.make_dln(default_config().dln)


def random_outputs(key, batch=2):
  return jax.random.normal(key, (batch, int(LAYOUT.offsets[-1]), 5 + CLASSES))


GT = jnp.stack(
  [truth([[0.1, 0.2, 0.3, 0.35, 2], [0.4, 0.3, 0.95, 0.9, 0]]), truth([[0.5, 0.5, 0.7, 0.8, 1]])]
)


def test_standard_loss_is_the_sum_of_bce_terms_computed_directly():
  out = random_outputs(jax.random.PRNGKey(1))
  got = loss(out, GT, terms=True)
  t = jax.jit(jax.vmap(lambda g: assign(g, LAYOUT)))(GT)
  resp = np.asarray(t["responsible"])
  bce = optax.sigmoid_binary_cross_entropy
  # No prediction here overlaps a box by more than 0.5 unless responsible: check, then compare.
  cls_target = jax.nn.one_hot(t["label"], CLASSES)
  expected_cls = (resp[..., None] * bce(out[..., 5:], cls_target)).sum((1, 2)).mean()
  np.testing.assert_allclose(got["class"], expected_cls, rtol=1e-5)
  total = loss(out, GT)
  np.testing.assert_allclose(total, sum(got.values()), rtol=1e-5)
  # A mean over images: a batch split over devices gives the whole batch's loss and gradient.
  halves = [loss(out[i : i + 1], GT[i : i + 1]) for i in range(2)]
  np.testing.assert_allclose(total, np.mean(halves), rtol=1e-5)
  z, y = jnp.array([-3.0, 0.5, 4.0]), jnp.array([1, 0, 1])
  np.testing.assert_allclose(binary_items(ce_items, z, y), bce(z, y), rtol=1e-5)


def test_anchors_already_overlapping_a_box_are_left_out_of_objectness():
  gt = truth([[0.4, 0.4, 0.8, 0.8, 1]])[None]  # centre (0.6, 0.6): cell (1, 1) at stride 32
  t = jax.jit(lambda g: assign(g, LAYOUT))(gt[0])
  out = jnp.full((1, int(LAYOUT.offsets[-1]), 5 + CLASSES), -20.0)  # tiny boxes, no objectness
  out = out.at[..., 4].set(0.0)
  base = loss(out, gt, terms=True)["objectness"]
  # One anchor of the box's cell that is not responsible for it predicts the box exactly: its
  # objectness term (BCE of logit 0 against 0) disappears.
  same_cell = (LAYOUT.scale == 2) & (LAYOUT.cells == 1).all(-1)
  other = int(np.nonzero(same_cell & ~np.asarray(t["responsible"]))[0][0])
  out2 = out.at[0, other, :2].set(jax.scipy.special.logit(jnp.float32(0.2)))
  out2 = out2.at[0, other, 2:4].set(jnp.log(0.4 / LAYOUT.anchors[other]))
  dropped = loss(out2, gt, terms=True)["objectness"]
  np.testing.assert_allclose(
    base - dropped, np.log(2.0), rtol=1e-5
  )  # BCE of logit 0 is log 2 whatever the target


def dln_config(**kw):
  c = default_config().dln
  for k, v in kw.items():
    c[k] = v
  return c


def test_the_dln_at_initialisation_is_the_standard_loss_and_its_gradient():
  out = random_outputs(jax.random.PRNGKey(2))
  phi = DLN.init(jax.random.PRNGKey(3))

  @jax.jit  # one program for the three (each compilation of the loss takes seconds)
  def three(o, phi):
    scorers = (
      ce_items,
      functools.partial(DLN.item_values, phi),
      functools.partial(dln_table.table_item_values, dln_table.make_table(DLN, phi, 512)),
    )
    return [jax.value_and_grad(lambda z, s=s: yolo_loss(z, GT, LAYOUT, s))(o) for s in scorers]

  standard, learned, tabulated = three(out, phi)
  np.testing.assert_allclose(learned[0], standard[0], rtol=1e-5)
  np.testing.assert_allclose(learned[1], standard[1], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(tabulated[0], standard[0], rtol=1e-4)


@pytest.mark.parametrize("kind", ["one_vs_rest", "one_vs_one"])
def test_dln_parameters_receive_the_gradient_of_the_detection_loss(kind):
  cfg = dln_config(
    item_kind=kind, network="free" if kind == "one_vs_one" else "ce_residual", table_size=0
  )
  dln = dln_lib.make_dln(cfg)
  phi = dln.init(jax.random.PRNGKey(4))
  out = random_outputs(jax.random.PRNGKey(5))
  g = jax.jit(
    jax.grad(lambda p: yolo_loss(out, GT, LAYOUT, functools.partial(dln.item_values, p)))
  )(phi)
  flat = jax.flatten_util.ravel_pytree(g)[0]
  assert np.isfinite(flat).all() and np.abs(flat).max() > 0


def test_nms_keeps_the_best_of_overlapping_boxes_of_a_class_only():
  boxes = jnp.array(
    [
      [0.1, 0.1, 0.5, 0.5],
      [0.12, 0.1, 0.5, 0.52],
      [0.1, 0.1, 0.5, 0.5],
      [0.6, 0.6, 0.9, 0.9],
      [0.6, 0.6, 0.9, 0.9],
    ]
  )
  p = Boxes(
    boxes, jnp.array([0.8, 0.9, 0.7, 0.6, 0.001]), jnp.array([0, 0, 1, 0, 0]), jnp.ones(5, bool)
  )
  got = jax.jit(functools.partial(nms, max_detections=6))(p)
  assert got.boxes.shape == (6, 4) and got.valid.tolist() == [True] * 3 + [False] * 3
  np.testing.assert_allclose(got.scores[:3], [0.9, 0.7, 0.6])  # 0.8 suppressed, 0.001 too low
  assert got.classes[:3].tolist() == [0, 1, 0]
  np.testing.assert_allclose(got.boxes[0], boxes[1])


def test_detector_turns_outputs_into_padded_detections():
  out = random_outputs(jax.random.PRNGKey(6), batch=3)
  det = make_detector(LAYOUT, max_detections=10)(out)
  assert det.boxes.shape == (3, 10, 4) and det.valid.shape == (3, 10)
  scores = np.where(det.valid, det.scores, np.inf)
  assert np.all(np.diff(np.where(det.valid, det.scores, -np.inf), axis=1)[det.valid[:, 1:]] <= 0)
  assert np.all(scores > 0.005)


def targets_as_outputs(gt, layout, num_classes, confidence=10.0):
  """The outputs `(B, N, 5 + C)` a perfect network would give: every anchor's box targets, the
  objectness and class logits at +-`confidence` as the targets say."""
  t = jax.vmap(lambda g: assign(g, layout))(gt)
  xy = jax.scipy.special.logit(jnp.clip(t["offsets"], 1e-6, 1 - 1e-6))
  obj = jnp.where(t["responsible"], confidence, -confidence)[..., None]
  cls = jnp.where(jax.nn.one_hot(t["label"], num_classes) > 0, confidence, -confidence)
  return jnp.concatenate([xy, t["log_size"], obj, cls], -1)


def perfect_map(gt, layout, num_classes):
  """VOC mAP@0.5 of `targets_as_outputs`, through the library's decoding, NMS and metric."""
  found = jax.device_get(make_detector(layout)(targets_as_outputs(gt, layout, num_classes)))
  detections = [Detections(b[k], s[k], c[k]) for b, s, c, k in zip(*found)]
  real = [g[g[:, 4] >= 0] for g in np.asarray(gt)]
  truths = [GroundTruth(g[:, :4], g[:, 4].astype(int), np.zeros(len(g), bool)) for g in real]
  return mean_average_precision(detections, truths, num_classes)[0]


def test_the_losss_targets_written_as_outputs_detect_the_shapes_boxes_with_fitted_anchors():
  """The targets the loss trains towards must score mAP ~1. On shapes scenes (boxes 15-60% of the
  side) YOLO-v3's COCO anchors send nearly every box to two anchors of the 2x2 stride-32 grid,
  where a tenth of the boxes collide and can never be detected (one cause of the detector's mAP
  near 0); anchors fitted to the boxes spread them over all three scales (two collisions left)."""
  gt = jnp.asarray(shapes.detection_targets(shapes.generate(0, 96)))
  classes = len(shapes.CLASSES)
  fitted = yolo.anchor_layout(SIZE, SIZE, yolo.fit_anchors(gt))
  assert perfect_map(gt, fitted, classes) > 0.98
  assert perfect_map(gt, LAYOUT, classes) < 0.92
  responsible = jax.vmap(assign, (0, None))(gt, fitted)["responsible"]
  np.testing.assert_array_equal(np.unique(fitted.scale[np.asarray(responsible).any(0)]), [0, 1, 2])


def test_fit_anchors_finds_the_shapes_of_clustered_boxes_sorted_by_area():
  shapes_wh = np.array([[0.1 * (k + 1), 0.05 * (k + 2)] for k in range(9)], np.float32)
  rng = np.random.default_rng(0)
  wh = np.repeat(shapes_wh, 20, 0) * rng.uniform(0.98, 1.02, (180, 2))
  rows = np.concatenate([np.zeros((180, 2)), wh, np.zeros((180, 1))], -1)
  rows = np.concatenate([rows, [[0, 0, 0.5, 0.5, -1]]])  # an unused row counts for nothing
  np.testing.assert_allclose(yolo.fit_anchors(rows), shapes_wh, rtol=0.02)
  with pytest.raises(ValueError, match="at least 9 boxes"):
    yolo.fit_anchors(rows[:8])
  with pytest.raises(ValueError, match="9 anchors"):
    yolo.anchor_layout(SIZE, SIZE, shapes_wh[:8])
