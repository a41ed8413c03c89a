"""The image students: BatchNorm statistics inside the student step, and augmentation.

The tests compute in jitted programs: eagerly, every operation (every parameter initialiser too)
compiles a program of its own.
"""

import functools
import itertools

import chex
import jax
import numpy as np
import optax

from conftest import fast_jit
from l2t_jax import losses
from l2t_jax.config import default_config
from l2t_jax.data import augment
from l2t_jax.students import build_student
from l2t_jax.unroll import init_student_state, unroll


def resnet8():
  cfg = default_config().student
  cfg.name, cfg.depth = "resnet", 8
  return build_student(cfg, num_classes=3)


def test_batchnorm_running_statistics_move_in_training_and_serve_evaluation():
  student = resnet8()
  optimizer = optax.sgd(0.05, momentum=0.9)
  rng = np.random.default_rng(0)
  x = rng.normal(1.5, 2.0, size=(3, 6, 8, 8, 3)).astype(np.float32)  # 3 steps of 6 images
  y = rng.integers(0, 3, size=(3, 6)).astype(np.int32)
  ce = lambda _, logits, labels: losses.cross_entropy(logits, labels)  # noqa: E731

  @fast_jit
  def initial_and_trained(batches):
    state0 = init_student_state(student, optimizer, jax.random.PRNGKey(0), batches["x"][0, :1])
    return state0, unroll(student, optimizer, ce, (), state0, batches)[0]

  state0, state = initial_and_trained({"x": x, "y": y})
  stats0 = state0.model_state["batch_stats"]

  # Training updated every running mean and variance (they start at 0 and 1).
  chex.assert_trees_all_equal_shapes_and_dtypes(stats0, state.model_state["batch_stats"])
  moved = jax.tree_util.tree_map(
    lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
    stats0,
    state.model_state["batch_stats"],
  )
  assert min(jax.tree_util.tree_leaves(moved)) > 1e-3

  evaluate = fast_jit(lambda s, xs: student.apply(s.params, s.model_state, xs, False)[0])
  train_mode = fast_jit(lambda s, xs: student.apply(s.params, s.model_state, xs, True)[0])
  batch = x[0]
  chex.assert_shape([evaluate(state, batch), train_mode(state, batch)], (6, 3))  # images, classes
  # Evaluation normalises with the running averages: an image gets the same logits alone or in
  # any batch, and other running averages give other logits.
  logits = np.asarray(evaluate(state, batch))
  np.testing.assert_allclose(evaluate(state, batch[:1]), logits[:1], rtol=1e-5, atol=1e-5)
  with_initial_stats = state._replace(model_state=state0.model_state)
  assert float(np.abs(np.asarray(evaluate(with_initial_stats, batch)) - logits).max()) > 1e-2
  # Training mode normalises with the batch's own statistics: the company changes the logits.
  alone_in_two, in_six = (np.asarray(train_mode(state, b))[:1] for b in (batch[:2], batch))
  assert float(np.abs(alone_in_two - in_six).max()) > 1e-3


def test_augmentation_is_a_padded_crop_and_flip_keyed_by_seed_step_and_position():
  images = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype(np.float32)

  @functools.partial(fast_jit, static_argnums=0)
  def augmented(seed, step, positions, images):
    keys = augment.example_keys(seed=seed, step=step, positions=positions)
    return augment.crop_and_flip_batch(keys, images, padding=2)

  out = np.asarray(augmented(3, np.int32(7), np.arange(4), images))
  chex.assert_equal_shape([out, images])
  chex.assert_type(out, images.dtype)
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(4):
    candidates = [
      w[:, ::-1] if flip else w
      for top, left, flip in itertools.product(range(5), range(5), (False, True))
      for w in [padded[i, top : top + 6, left : left + 6]]
    ]
    assert any(np.array_equal(out[i], c) for c in candidates)
  again = augmented(3, np.int32(7), np.arange(4), images)
  np.testing.assert_array_equal(out, again)  # a pure function of (seed, step, position)
  other_step = augmented(3, np.int32(8), np.arange(4), images)
  assert not np.array_equal(out, other_step)
  # Position i of the global batch is augmented alike wherever it sits (e.g. on another device).
  shifted = augmented(3, np.int32(7), np.arange(2, 4), images[2:])
  np.testing.assert_array_equal(out[2:], shifted)
