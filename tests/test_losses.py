"""Validation objectives: what they are blind to and what they equal.

Each test computes what it compares in one jitted function and checks the results with NumPy: run
eagerly, every operation compiled a program of its own, most of this file's time."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from l2t_jax import losses


@jax.jit
def _scale_and_shift():
  """Scale-free CE of random logits, and of the same logits scaled and shifted per sample; CE of
  the logits and of the logits halved."""
  logits = jax.random.normal(jax.random.PRNGKey(0), (16, 10))
  labels = jnp.arange(16) % 10
  scale = jnp.exp(jax.random.normal(jax.random.PRNGKey(1), (16, 1)))  # a positive scale per sample
  shift = jax.random.normal(jax.random.PRNGKey(2), (16, 1))
  return (
    losses.scale_free_ce(logits, labels, 0.3),
    losses.scale_free_ce(scale * logits + shift, labels, 0.3),
    losses.cross_entropy(0.5 * logits, labels),
    losses.cross_entropy(logits, labels),
  )


def test_scale_free_ce_ignores_the_scale_and_shift_of_each_samples_logits():
  a, b, ce_half, ce = _scale_and_shift()
  np.testing.assert_allclose(a, b, rtol=1e-5)
  # Plain CE does change: a student that is only less confident scores better on it.
  assert float(ce_half) != float(ce)


def test_scale_free_ce_is_cross_entropy_of_standardised_logits():
  @jax.jit
  def both(logits, labels):
    z = logits / jnp.sqrt(5.0)  # zero mean, unit root-mean-square
    return losses.scale_free_ce(logits, labels, 0.5), losses.cross_entropy(z / 0.5, labels)

  np.testing.assert_allclose(*both(np.array([[3.0, 1.0, -1.0, -3.0]]), np.array([1])), rtol=1e-5)


def test_each_validation_objective_has_its_value_on_a_hand_case():
  """Four samples, two classes, logits (2 ln 3, 0): p = (9/10, 1/10); three are right, one wrong."""
  logits = np.tile(np.array([2.0 * math.log(3.0), 0.0], np.float32), (4, 1))
  labels = np.array([0, 0, 0, 1])
  k, temperature = 5.0, 0.3
  softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
  expected = {
    # -log p_y: ln(10/9) three times, ln 10 once
    "ce": (3 * math.log(10 / 9) + math.log(10)) / 4,
    # 2 sigmoid(k (max p - p_y)) - 1: 0 when right, tanh(k (9/10 - 1/10) / 2) when wrong
    "smooth_error": math.tanh(0.4 * k) / 4,
    # standardised logits (1, -1), divided by the temperature
    "scale_free_ce": (3 * softplus(-2 / temperature) + softplus(2 / temperature)) / 4,
    # the fitted temperature makes the confidence the accuracy, 3/4: logits (ln 3, 0)
    "calibrated_ce": (3 * math.log(4 / 3) + math.log(4)) / 4,
  }
  assert set(expected) == set(losses.VAL_OBJECTIVES)
  got = jax.jit(
    lambda z, y: {n: losses.validation_objective(n, k, temperature)(z, y) for n in expected}
  )(logits, labels)
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)


@jax.jit
def _overconfident_batch():
  logits = 4.0 * jax.random.normal(jax.random.PRNGKey(4), (400, 10))
  noise = jax.random.randint(jax.random.PRNGKey(5), (400,), 0, 10)
  right = jax.random.uniform(jax.random.PRNGKey(6), (400,)) < 0.6
  return logits, jnp.where(right, logits.argmax(-1), noise)


def test_calibration_scale_is_the_minimising_inverse_temperature():
  grid = np.linspace(0.01, 3.0, 3000)

  @jax.jit
  def ce_on_grid_and_scale(logits, labels, grid):
    ce = jax.vmap(lambda b: losses.cross_entropy(b * logits, labels))(grid)
    return ce, losses.calibration_scale(logits, labels, 10)

  ce, scale = ce_on_grid_and_scale(*_overconfident_batch(), grid.astype(np.float32))
  np.testing.assert_allclose(scale, grid[np.argmin(np.asarray(ce))], atol=2e-3)


def test_calibrated_ce_ignores_the_students_overall_confidence():
  @jax.jit
  def objectives(logits, labels):
    b = losses.calibration_scale(logits, labels, 10)
    return (
      losses.calibrated_ce(logits, labels),
      [losses.calibrated_ce(scale * logits, labels) for scale in (0.25, 3.0)],
      losses.cross_entropy(0.25 * logits, labels),
      losses.cross_entropy(logits, labels),
      jax.grad(losses.calibrated_ce)(logits, labels),
      jax.grad(lambda z: losses.cross_entropy(b * z, labels))(logits),
    )

  a, rescaled, ce_quarter, ce, g_calibrated, g_ce = objectives(*_overconfident_batch())
  for other in rescaled:
    np.testing.assert_allclose(other, a, rtol=1e-4)
  # ... which plain CE rewards: the same ranking, less confident, scores far better.
  assert float(ce_quarter) < 0.7 * float(ce)
  # Its gradient is CE's at the fitted temperature (the temperature's own derivative is zero there).
  np.testing.assert_allclose(g_calibrated, g_ce, rtol=1e-4, atol=1e-7)


def test_calibrated_ce_fits_one_temperature_over_all_devices_slices():
  @jax.jit
  def whole_sliced_alone(logits, labels):
    sliced = jax.vmap(
      lambda z, y: losses.calibrated_ce(z, y, axis_name="devices"), axis_name="devices"
    )(logits.reshape(4, 100, 10), labels.reshape(4, 100))
    alone = jax.vmap(losses.calibrated_ce)(logits.reshape(4, 100, 10), labels.reshape(4, 100))
    return losses.calibrated_ce(logits, labels), sliced, alone

  whole, sliced, alone = map(np.asarray, whole_sliced_alone(*_overconfident_batch()))
  np.testing.assert_allclose(sliced.mean(), whole, rtol=1e-5)
  assert abs(float(alone.mean() - whole)) > 1e-4  # a temperature per slice is another objective


@jax.jit
def _noise_robust_losses(logits, labels):
  """GCE at q = 1e-4 and q = 1, SCE, and CE with its gradient, on the same logits."""
  ce = losses.cross_entropy(logits, labels)
  grads = [
    jax.grad(lambda z, f=f: f(z, labels))(logits)
    for f in (
      losses.cross_entropy,
      lambda z, y: losses.generalized_ce(z, y, 0.7),
      lambda z, y: losses.symmetric_ce(z, y, 0.1, 1.0),
    )
  ]
  return (
    ce,
    losses.generalized_ce(logits, labels, 1e-4),
    losses.generalized_ce(logits, labels, 1.0),
    losses.symmetric_ce(logits, labels, 0.1, 1.0),
    grads,
  )


def test_gce_and_sce_are_their_papers_formulas_and_pull_less_on_a_wrong_label_than_ce():
  logits = 3.0 * jax.random.normal(jax.random.PRNGKey(3), (32, 10))
  labels = jnp.arange(32) % 10
  ce, gce_small_q, gce_one, sce, (g_ce, g_gce, g_sce) = _noise_robust_losses(logits, labels)
  p_y = np.take_along_axis(np.asarray(jax.nn.softmax(logits)), np.asarray(labels)[:, None], 1)[:, 0]
  # GCE (1 - p_y^q) / q: CE as q -> 0, the mean absolute error's 1 - p_y at q = 1.
  np.testing.assert_allclose(gce_small_q, ce, rtol=1e-3)
  np.testing.assert_allclose(gce_one, np.mean(1.0 - p_y), rtol=1e-5)
  # SCE: 0.1 CE + 1.0 x reverse CE, which with log 0 clipped to -4 is 4 (1 - p_y).
  np.testing.assert_allclose(sce, 0.1 * ce + 4.0 * np.mean(1.0 - p_y), rtol=1e-5)
  # On the examples the student gets most wrong (a likely wrong label), both pull less than CE.
  worst = np.argsort(p_y)[:5]
  norm = lambda g: np.linalg.norm(np.asarray(g)[worst], axis=-1)  # noqa: E731
  assert (norm(g_gce) < norm(g_ce)).all() and (norm(g_sce) < norm(g_ce)).all()
