"""Detection and segmentation under L2T-DLN: the method's cycle, built from the configs as the
driver builds it, on the shapes scenes with one-layer students (the YOLO and DeepLab networks are
tested on their own in test_yolo.py and test_deeplab.py; through the driver in
test_detseg_driver.py). The student's loss starts as the task's standard loss, the steps log the
task's own numbers, and every DLN update is applied."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2t_jax.build import build_method, make_task
from l2t_jax.data import load_dataset
from l2t_jax.optim import student_optimizer
from l2t_jax.students import from_linen
from l2t_jax.students.yolo import BOX_OUTPUTS, anchor_layout

SIZE, BATCH = 32, 4


class PixelClassifier(nn.Module):
  """One 3x3 convolution: logits per pixel."""

  num_classes: int

  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Conv(self.num_classes, (3, 3))(x)


class GlobalDetector(nn.Module):
  """Pooled colour statistics to every anchor's `5 + C` outputs through one dense layer."""

  anchors: int
  num_classes: int

  @nn.compact
  def __call__(self, x, train):
    del train
    pooled = jnp.concatenate([x.mean((1, 2)), x.std((1, 2))], -1)
    out = nn.Dense(self.anchors * (BOX_OUTPUTS + self.num_classes))(pooled)
    return out.reshape(x.shape[0], self.anchors, BOX_OUTPUTS + self.num_classes)


def _config(name):
  from configs import shapes_seg, shapes_yolo

  config = {"detection": shapes_yolo, "segmentation": shapes_seg}[name].get_config()
  config.data.image_size, config.data.shapes_train_size, config.data.shapes_test_size = SIZE, 24, 4
  config.data.val_size, config.meta.val_batch_size = 8, BATCH  # one shape: one compilation
  config.meta.unroll_steps = config.meta.interval = 1
  config.train.batch_size, config.train.steps = BATCH, 2
  config.data.augment = False  # the standard loss below is computed on the scenes as they are
  return config


@pytest.mark.parametrize("name", ["detection", "segmentation"])
def test_l2t_dln_cycles_start_on_the_standard_loss_and_apply_every_update(name):
  config = _config(name)
  ds = load_dataset(config)
  task = make_task(config, ds.num_classes, ds.input_shape, train_labels=ds.train.y)
  module = (
    GlobalDetector(int(anchor_layout(SIZE, SIZE).offsets[-1]), ds.num_classes)
    if name == "detection"
    else PixelClassifier(ds.num_classes)
  )
  student = from_linen(module)
  method = build_method(
    config, student, student_optimizer(config.optim, config.train.steps), ds.num_classes, task=task
  )
  data = {"train_x": ds.train.x, "train_y": ds.train.y, "val_x": ds.val.x, "val_y": ds.val.y}
  state = method.init(jax.random.PRNGKey(0), jnp.asarray(ds.train.x[:1]))
  cycle = jax.jit(method.cycle)
  batches = np.arange(2 * BATCH).reshape(2, 1, BATCH)  # two cycles of one step
  val_idx = np.arange(config.meta.val_batch_size)
  first = state

  @jax.jit
  def standard_loss(student_state, x, y):  # (the students have no training mode of their own)
    return task.standard_loss(student.apply(student_state.params, {}, x, False)[0], y)

  standard = standard_loss(first.student, ds.train.x[batches[0, 0]], ds.train.y[batches[0, 0]])
  for idx in batches:
    state, metrics = cycle(state, data, idx, val_idx)
    if state.step == 1:
      # The DLN at initialisation is the standard loss (up to its table), and the logged CE is
      # the task's standard loss of the same outputs.
      np.testing.assert_allclose(metrics.train_ce, standard, rtol=1e-5)
      np.testing.assert_allclose(metrics.train_loss, standard, rtol=2e-3)
    assert 0.0 <= float(metrics.train_accuracy) <= 1.0
    assert 0.0 <= float(metrics.val_accuracy) <= 1.0
    # The teacher's objective: the task's standard loss on the validation batch, after the
    # segment (here the whole cycle).
    np.testing.assert_allclose(
      metrics.val_loss,
      standard_loss(state.student, ds.val.x[val_idx], ds.val.y[val_idx]),
      rtol=1e-5,
    )
  assert int(state.counters.meta_updates) == 2 and int(state.counters.skipped_meta_updates) == 0
  moved = jax.tree_util.tree_map(
    lambda a, b: float(jnp.abs(a - b).max()), state.loss_params, first.loss_params
  )
  assert max(jax.tree_util.tree_leaves(moved)) > 0  # the teacher moved the DLN
