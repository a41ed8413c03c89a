"""The tabulated DLN: cross-entropy at initialisation, close to the exact DLN elsewhere, accurate
item logits at the extremes.

Each test computes what it compares in jitted functions, shared by its parametrisations, with the
random inputs drawn outside them (one program per shape) and passed in, and checks the results
with NumPy: run eagerly, every operation compiled a program of its own, most of this file's time."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from l2t_jax import losses
from l2t_jax.dln_table import item_logit, make_table, table_item_values, table_loss
from tests.conftest import dln_of, dln_phi, fast_jit

SIZE = 256  # the default, config.dln.table_size


def normal(seed, shape, scale=1.0):
  return scale * jax.random.normal(jax.random.PRNGKey(seed), shape)


def labels_of(n):
  return np.arange(n) % 10


@functools.partial(fast_jit, static_argnums=0)
def _table_and_ce(bound, phi, logits, labels):
  """The tabulated DLN and cross-entropy: values and logits' gradients."""
  table = make_table(dln_of(), phi, SIZE, slope_bound=bound)
  return (
    table_loss(table, logits, labels),
    losses.cross_entropy(logits, labels),
    jax.grad(lambda l: table_loss(table, l, labels))(logits),
    jax.grad(lambda l: losses.cross_entropy(l, labels))(logits),
  )


def test_tabulated_dln_at_init_is_cross_entropy_exactly():
  phi = dln_phi()
  loss_table, loss_ce, g_table, g_ce = _table_and_ce(
    0.0, phi, normal(2, (64, 10), 4.0), labels_of(64)
  )
  np.testing.assert_allclose(loss_table, loss_ce, rtol=1e-6)
  np.testing.assert_allclose(g_table, g_ce, rtol=1e-5, atol=1e-7)


@functools.partial(fast_jit, static_argnums=0)
def _table_and_exact(learn_scale, phi, logits, labels):
  """The exact DLN's and the table's item values, logits' gradients and parameters' gradients."""
  dln = dln_of(learn_scale)
  table = make_table(dln, phi, SIZE)
  return (
    dln.item_values(phi, logits, labels),
    jax.nn.one_hot(labels, 10) * -jax.nn.log_softmax(logits),
    table_item_values(table, logits, labels),
    jax.grad(lambda l: dln.loss(phi, l, labels))(logits),
    jax.grad(lambda l: table_loss(table, l, labels))(logits),
    ravel_pytree(jax.grad(lambda p: dln.loss(p, logits, labels))(phi))[0],
    ravel_pytree(jax.grad(lambda p: table_loss(make_table(dln, p, SIZE), logits, labels))(phi))[0],
  )


@pytest.mark.parametrize("logit_scale,learn_scale", [(1.0, False), (8.0, False), (1.0, True)])
def test_tabulated_dln_matches_the_exact_dln(logit_scale, learn_scale):
  phi = dln_phi(learn_scale, moved_by=0.2)
  exact, ce_items, table_values, g_exact, g_table, gp_exact, gp_table = map(
    np.asarray,
    _table_and_exact(learn_scale, phi, normal(3, (256, 10), logit_scale), labels_of(256)),
  )
  assert float(np.abs(exact - ce_items).max()) > 1e-2
  # Near p = 1 the exact DLN's own float32 log p is off by ~1e-6, which moves its log(1 - p)
  # feature; the table works from an accurate item logit instead, hence the 5e-4.
  np.testing.assert_allclose(table_values, exact, atol=5e-4)
  assert float(np.abs(g_table - g_exact).max() / np.abs(g_exact).max()) < 2e-3
  assert float(np.linalg.norm(gp_table - gp_exact) / np.linalg.norm(gp_exact)) < 1e-3


@pytest.mark.parametrize("bound", [1.0, 2.0])
def test_a_bounded_table_is_cross_entropy_at_init(bound):
  phi = dln_phi()
  loss_table, loss_ce, _, _ = _table_and_ce(bound, phi, normal(2, (64, 10), 4.0), labels_of(64))
  np.testing.assert_allclose(loss_table, loss_ce, rtol=1e-6)


def _two_class_items(table, s):
  """Item values of a two-class sample with logits (0, s) and label 1: the target item sits at
  item logit s, the other item at -s."""
  values = table_item_values(table, jnp.stack([jnp.zeros_like(s), s], -1), jnp.ones(s.shape, int))
  return values[..., 1], values[..., 0]


def _slopes(table, s):
  """d/ds of the target item's and the other item's values (the other's: minus its slope in -s)."""
  return jax.vmap(jax.jacfwd(lambda x: jnp.stack(_two_class_items(table, x))))(s).T


S = np.linspace(-12.0, 12.0, 2001, dtype=np.float32)  # the item logits the slopes are checked at
# The clamps act at the knots; between them a cubic piece's slope can pass a clamped value by a
# share that shrinks with the square of the knot spacing: at most 0.22 % at 256 knots (0.055 % at
# 512) on this DLN. Far out, where the slopes are ~1e-5, float32 rounding adds a few 1e-6.
BETWEEN_KNOTS, ROUNDING = 3e-3, 1e-5


@functools.partial(fast_jit, static_argnums=(0, 1))
def _bounded_slopes(bound, floor, phi, s):
  """At item logits `s`: the slopes of the unbounded table, and the slopes and item values of the
  table bounded at `bound` (and floored at `floor`)."""
  dln = dln_of()
  table = make_table(dln, phi, SIZE, slope_bound=bound, slope_floor=floor)
  return _slopes(make_table(dln, phi, SIZE), s), _slopes(table, s), _two_class_items(table, s)


def bounded_slopes(bound, floor=0.0):
  phi = dln_phi(moved_by=0.5)
  return jax.tree.map(np.asarray, _bounded_slopes(bound, floor, phi, S))


@pytest.mark.parametrize("bound", [1.0, 2.0])
def test_a_bounded_table_never_rewards_a_wrong_answer_nor_pushes_harder_than_the_bound(bound):
  (d_target, d_other), (b_target, b_other), (target, other) = bounded_slopes(bound)
  assert float(d_target.max()) > 1e-3 or float(d_other.max()) > 1e-3  # unbounded: breaks the rule
  # Binary CE's slope, sigmoid(-t) at t = s, times the bound.
  limit = bound * np.asarray(jax.nn.sigmoid(-S)) * (1 + BETWEEN_KNOTS) + ROUNDING
  assert bool(np.all(b_target <= 1e-4)) and bool(np.all(-b_target <= limit))  # for the target,
  assert bool(np.all(b_other <= 1e-4)) and bool(np.all(-b_other <= limit))  # at t = -s the other
  # Zero where cross-entropy's item is, else above.
  assert float(np.abs(target[-1])) < 1e-3 and float(np.abs(other[-1])) < 1e-3
  assert float(np.minimum(target, other).min()) > -1e-3


def test_a_slope_floor_keeps_a_share_of_cross_entropys_push_on_every_item():
  sigmoid = np.asarray(jax.nn.sigmoid(-S))
  floor = 0.25 * sigmoid * (1 - BETWEEN_KNOTS) - ROUNDING  # a quarter of binary CE's slope
  _, unfloored, _ = bounded_slopes(1.0)
  assert float((-unfloored + floor).max()) > 1e-3  # without the floor some items are given up
  _, (d_target, d_other), _ = bounded_slopes(1.0, floor=0.25)
  assert bool(np.all(-d_target >= floor)) and bool(np.all(-d_other >= floor))
  assert bool(np.all(-d_target <= sigmoid * (1 + BETWEEN_KNOTS) + ROUNDING))


@functools.partial(fast_jit, static_argnums=0)
def _curvature_slopes(curvature_bound, phi, s):
  table = make_table(dln_of(), phi, SIZE, slope_bound=1.0, curvature_bound=curvature_bound)
  return _slopes(table, s)


def test_a_curvature_bound_turns_the_clamps_steps_into_ramps_by_damping_only():
  moved = dln_phi(moved_by=0.5)
  sharp, smooth = (np.asarray(_curvature_slopes(c, moved, S)) for c in (0.0, 0.25))
  per_logit = lambda slopes: np.abs(np.diff(slopes, axis=1)).max(1) / (S[1] - S[0])  # noqa: E731
  assert per_logit(sharp).min() > 0.5  # the clamps switch pushes on more sharply than CE does
  # No item's slope changes faster than the bound (to the cubic pieces' own overshoot) ...
  assert np.all(per_logit(smooth) <= 0.25 * (1 + 0.02))
  # ... and the smoothing only damped: every push the same sign and at most as strong, no reward.
  assert np.all(np.abs(smooth) <= np.abs(sharp) * (1 + BETWEEN_KNOTS) + ROUNDING)
  assert float(smooth.max()) < 1e-4
  assert float(np.abs(smooth - sharp).max()) > 1e-2
  # Cross-entropy itself is no sharper than the bound: at initialisation nothing changes.
  at_init = dln_phi()
  np.testing.assert_allclose(
    _curvature_slopes(0.25, at_init, S), _curvature_slopes(0.0, at_init, S), atol=1e-6
  )


@fast_jit
def _bounded_items(phi, s):
  return _two_class_items(make_table(dln_of(True), phi, SIZE, slope_bound=1.0), s)


def test_a_bounded_table_stays_non_negative_for_huge_logits():
  # A DLN with a small learned scale: its residual carries most of cross-entropy's slope at the
  # grid's ends, which continued linearly would turn into a reward for ever larger logits.
  phi = dln_phi(True, moved_by=0.5)
  phi = dict(phi, log_scale=jnp.array(-2.0))
  s = np.concatenate([-np.logspace(1, 7, 200), np.logspace(1, 7, 200)]).astype(np.float32)
  target, other = _bounded_items(phi, s)
  assert float(np.minimum(target, other).min()) > -1e-5


def test_item_logit_is_accurate_at_both_ends_and_finite_beyond():
  logits = np.array(
    [[0.0, 30.0, -10.0], [5.0, 5.0 + 1e-3, -40.0], [0.0, 200.0, -200.0]], np.float32
  )
  log_p, t = fast_jit(item_logit)(logits)
  with jax.enable_x64(True):

    @fast_jit
    def reference(z):
      others = [jax.nn.logsumexp(jnp.delete(z, c, axis=1), axis=1) for c in range(3)]
      return jax.nn.log_softmax(z), z - jnp.stack(others, 1)

    ref_log_p, ref_t = reference(logits.astype(np.float64))
  np.testing.assert_allclose(log_p[:2], ref_log_p[:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t[:2], ref_t[:2], rtol=1e-4)  # t = 30 is p = 1 - 1e-13
  assert bool(np.all(np.isfinite(t))) and bool(np.all(np.isfinite(log_p[:2])))
  dln, phi = dln_of(), dln_phi(moved_by=0.2)
  grads = fast_jit(
    jax.grad(lambda l, p: table_loss(make_table(dln, p, SIZE), l, np.array([1, 0, 2])))
  )(logits, phi)
  assert bool(np.all(np.isfinite(grads)))


@functools.partial(fast_jit, static_argnums=0)
def _second_derivatives(use_table, phi, logits, v):
  """The loss's Hessian-vector product in the logits and its mixed logits / DLN-parameters
  product, flattened."""
  dln, labels = dln_of(), labels_of(len(logits))

  def loss(phi, logits):
    if use_table:
      return table_loss(make_table(dln, phi, SIZE), logits, labels)
    return dln.loss(phi, logits, labels)

  grad_z = jax.grad(loss, argnums=1)
  hvp = jax.jvp(lambda z: grad_z(phi, z), (logits,), (v,))[1]
  mixed = jax.grad(lambda p: jnp.vdot(v, grad_z(p, logits)))(phi)
  return hvp, ravel_pytree(mixed)[0]


@pytest.mark.parametrize("use_table", [True, False])
def test_second_derivatives_stay_finite_for_huge_logits(use_table):
  """A student that fits its training set drives logits far apart (every other class's
  probability underflows); the hypergradient then needs finite Hessian-vector products there."""
  phi = dln_phi(moved_by=0.1)
  for scale in (100.0, 1000.0):
    hvp, mixed = _second_derivatives(use_table, phi, normal(2, (8, 10), scale), normal(4, (8, 10)))
    assert np.all(np.isfinite(hvp)), scale
    assert np.all(np.isfinite(mixed)), scale


@functools.partial(jax.jit, static_argnums=0)  # XLA's default: its tolerance is tight (float32)
def _fast_and_autodiff(bound, phi, logits, labels, v):
  """The value, the gradients and the two second derivatives (flattened) of table_loss and of the
  sum of table_item_values, both through the table of `phi`."""
  dln = dln_of(True)

  def derivatives(loss):
    def f(p, z):
      return loss(make_table(dln, p, SIZE, slope_bound=bound), z, labels)

    grad_z = jax.grad(f, argnums=1)
    return [
      ravel_pytree(d)[0]
      for d in (
        f(phi, logits),
        grad_z(phi, logits),
        jax.grad(f)(phi, logits),
        jax.grad(lambda zz: jnp.vdot(v, grad_z(phi, zz)))(logits),
        jax.grad(lambda pp: jnp.vdot(v, grad_z(pp, logits)))(phi),
      )
    ]

  return derivatives(table_loss), derivatives(
    lambda t, z, l: table_item_values(t, z, l).sum(-1).mean()
  )


@pytest.mark.parametrize("bound", [0.0, 1.0])
def test_the_written_out_derivatives_equal_automatic_differentiation_of_the_items(bound):
  """table_loss (derivatives by hand, for speed) against the same loss summed from
  table_item_values and differentiated automatically: the value, the gradients w.r.t. the logits
  and w.r.t. the DLN parameters through the table, and the two second derivatives a
  hypergradient takes (Hessian-vector product in the logits, mixed logits / parameters)."""
  phi = dln_phi(True, moved_by=0.3)
  v = normal(4, (64, 10))
  for scale in (1.0, 30.0):  # moderate logits, and every other probability underflowing
    fast, autodiff = _fast_and_autodiff(bound, phi, normal(2, (64, 10), scale), labels_of(64), v)
    for a, b in zip(fast, autodiff):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
