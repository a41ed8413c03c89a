"""The image students: BatchNorm statistics inside the student step, and augmentation."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

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
  x = jnp.asarray(rng.normal(1.5, 2.0, size=(3, 6, 8, 8, 3)), jnp.float32)  # 3 steps of 6 images
  y = jnp.asarray(rng.integers(0, 3, size=(3, 6)))
  state0 = init_student_state(student, optimizer, jax.random.PRNGKey(0), x[0, :1])
  stats0 = state0.model_state["batch_stats"]
  ce = lambda _, logits, labels: losses.cross_entropy(logits, labels)  # noqa: E731
  state, _ = jax.jit(lambda s, b: unroll(student, optimizer, ce, (), s, b))(
    state0, {"x": x, "y": y}
  )

  # Training updated every running mean and variance (they start at 0 and 1).
  chex.assert_trees_all_equal_shapes_and_dtypes(stats0, state.model_state["batch_stats"])
  moved = jax.tree_util.tree_map(
    lambda a, b: float(jnp.abs(a - b).max()), stats0, state.model_state["batch_stats"]
  )
  assert min(jax.tree_util.tree_leaves(moved)) > 1e-3

  evaluate = jax.jit(lambda s, xs: student.apply(s.params, s.model_state, xs, False)[0])
  train_mode = jax.jit(lambda s, xs: student.apply(s.params, s.model_state, xs, True)[0])
  batch = x[0]
  chex.assert_shape([evaluate(state, batch), train_mode(state, batch)], (6, 3))  # images, classes
  # Evaluation normalises with the running averages: an image gets the same logits alone or in
  # any batch, and other running averages give other logits.
  np.testing.assert_allclose(
    evaluate(state, batch[:1]), evaluate(state, batch)[:1], rtol=1e-5, atol=1e-5
  )
  with_initial_stats = state._replace(model_state=state0.model_state)
  assert float(jnp.abs(evaluate(with_initial_stats, batch) - evaluate(state, batch)).max()) > 1e-2
  # Training mode normalises with the batch's own statistics: the company changes the logits.
  assert (
    float(jnp.abs(train_mode(state, batch[:2])[:1] - train_mode(state, batch)[:1]).max()) > 1e-3
  )


def test_augmentation_is_a_padded_crop_and_flip_keyed_by_seed_step_and_position():
  images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6, 6, 2)), jnp.float32)
  keys = augment.example_keys(seed=3, step=jnp.int32(7), positions=jnp.arange(4))
  out = augment.crop_and_flip_batch(keys, images, padding=2)
  chex.assert_equal_shape([out, images])
  chex.assert_type(out, images.dtype)
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(4):
    candidates = [
      w[:, ::-1] if flip else w
      for top, left, flip in itertools.product(range(5), range(5), (False, True))
      for w in [padded[i, top : top + 6, left : left + 6]]
    ]
    assert any(np.array_equal(np.asarray(out[i]), c) for c in candidates)
  again = augment.crop_and_flip_batch(
    augment.example_keys(3, jnp.int32(7), jnp.arange(4)), images, 2
  )
  np.testing.assert_array_equal(out, again)  # a pure function of (seed, step, position)
  other_step = augment.crop_and_flip_batch(
    augment.example_keys(3, jnp.int32(8), jnp.arange(4)), images, 2
  )
  assert not np.array_equal(out, other_step)
  # Position i of the global batch is augmented alike wherever it sits (e.g. on another device).
  shifted = augment.crop_and_flip_batch(
    augment.example_keys(3, jnp.int32(7), jnp.arange(2, 4)), images[2:], 2
  )
  np.testing.assert_array_equal(out[2:], shifted)
