"""The tabulated DLN: cross-entropy at initialisation, close to the exact DLN elsewhere, accurate
item logits at the extremes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from l2t_jax import losses
from l2t_jax.config import default_config
from l2t_jax.dln import make_dln
from l2t_jax.dln_table import item_logit, make_table, table_item_values, table_loss

SIZE = 512


def moved_dln(scale, seed=1, learn_scale=False):
  cfg = default_config().dln
  cfg.learn_scale = learn_scale
  dln = make_dln(cfg)
  flat, unravel = ravel_pytree(dln.init(jax.random.PRNGKey(0)))
  return dln, unravel(flat + scale * jax.random.normal(jax.random.PRNGKey(seed), flat.shape))


def test_tabulated_dln_at_init_is_cross_entropy_exactly():
  dln = make_dln(default_config().dln)
  table = make_table(dln, dln.init(jax.random.PRNGKey(0)), SIZE)
  logits = 4.0 * jax.random.normal(jax.random.PRNGKey(2), (64, 10))
  labels = jnp.arange(64) % 10
  np.testing.assert_allclose(
    table_loss(table, logits, labels), losses.cross_entropy(logits, labels), rtol=1e-6
  )
  np.testing.assert_allclose(
    jax.grad(lambda l: table_loss(table, l, labels))(logits),
    jax.grad(lambda l: losses.cross_entropy(l, labels))(logits),
    rtol=1e-5,
    atol=1e-7,
  )


@pytest.mark.parametrize("logit_scale,learn_scale", [(1.0, False), (8.0, False), (1.0, True)])
def test_tabulated_dln_matches_the_exact_dln(logit_scale, learn_scale):
  dln, phi = moved_dln(0.2, learn_scale=learn_scale)
  table = make_table(dln, phi, SIZE)
  logits = logit_scale * jax.random.normal(jax.random.PRNGKey(3), (256, 10))
  labels = jnp.arange(256) % 10
  exact = dln.item_values(phi, logits, labels)
  assert (
    float(jnp.abs(exact - jax.nn.one_hot(labels, 10) * -jax.nn.log_softmax(logits)).max()) > 1e-2
  )
  # Near p = 1 the exact DLN's own float32 log p is off by ~1e-6, which moves its log(1 - p)
  # feature; the table works from an accurate item logit instead, hence the 5e-4.
  np.testing.assert_allclose(table_item_values(table, logits, labels), exact, atol=5e-4)
  g_exact = jax.grad(lambda l: dln.loss(phi, l, labels))(logits)
  g_table = jax.grad(lambda l: table_loss(table, l, labels))(logits)
  assert float(jnp.abs(g_table - g_exact).max() / jnp.abs(g_exact).max()) < 2e-3
  gp_exact = ravel_pytree(jax.grad(lambda p: dln.loss(p, logits, labels))(phi))[0]
  gp_table = ravel_pytree(
    jax.grad(lambda p: table_loss(make_table(dln, p, SIZE), logits, labels))(phi)
  )[0]
  assert float(jnp.linalg.norm(gp_table - gp_exact) / jnp.linalg.norm(gp_exact)) < 1e-3


@pytest.mark.parametrize("bound", [1.0, 2.0])
def test_a_bounded_table_is_cross_entropy_at_init(bound):
  dln = make_dln(default_config().dln)
  table = make_table(dln, dln.init(jax.random.PRNGKey(0)), SIZE, slope_bound=bound)
  logits = 4.0 * jax.random.normal(jax.random.PRNGKey(2), (64, 10))
  labels = jnp.arange(64) % 10
  np.testing.assert_allclose(
    table_loss(table, logits, labels), losses.cross_entropy(logits, labels), rtol=1e-6
  )


def _two_class_items(table, s):
  """Item values of a two-class sample with logits (0, s) and label 1: the target item sits at
  item logit s, the other item at -s."""
  values = table_item_values(table, jnp.stack([jnp.zeros_like(s), s], -1), jnp.ones(s.shape, int))
  return values[..., 1], values[..., 0]


@pytest.mark.parametrize("bound", [1.0, 2.0])
def test_a_bounded_table_never_rewards_a_wrong_answer_nor_pushes_harder_than_the_bound(bound):
  dln, phi = moved_dln(0.5)
  s = jnp.linspace(-12.0, 12.0, 2001)

  def slopes(table):  # other item: d/ds of its value, i.e. minus its slope in -s
    return jax.vmap(jax.jacfwd(lambda x: jnp.stack(_two_class_items(table, x))))(s).T

  d_target, d_other = slopes(make_table(dln, phi, SIZE))  # unbounded: breaks the rule somewhere
  assert float(d_target.max()) > 1e-3 or float(d_other.max()) > 1e-3
  table = make_table(dln, phi, SIZE, slope_bound=bound)
  d_target, d_other = slopes(table)
  limit = bound * jax.nn.sigmoid(-s) + 1e-4  # binary CE slope: sigmoid(-t) at t = s for the
  assert bool(jnp.all(d_target <= 1e-4)) and bool(jnp.all(-d_target <= limit))  # target, and at
  assert bool(jnp.all(d_other <= 1e-4)) and bool(jnp.all(-d_other <= limit))  # t = -s the other
  target, other = _two_class_items(table, s)  # zero where cross-entropy's item is, else above
  assert float(jnp.abs(target[-1])) < 1e-3 and float(jnp.abs(other[-1])) < 1e-3
  assert float(jnp.minimum(target, other).min()) > -1e-3


def test_a_slope_floor_keeps_a_share_of_cross_entropys_push_on_every_item():
  dln, phi = moved_dln(0.5)
  s = jnp.linspace(-12.0, 12.0, 2001)
  slopes = jax.vmap(jax.jacfwd(lambda x: jnp.stack(_two_class_items(table, x))))
  table = make_table(dln, phi, SIZE, slope_bound=1.0)
  floor = 0.25 * jax.nn.sigmoid(-s) - 1e-4  # a quarter of binary CE's slope
  assert float((-slopes(s).T + floor).max()) > 1e-3  # without the floor some items are given up
  table = make_table(dln, phi, SIZE, slope_bound=1.0, slope_floor=0.25)
  d_target, d_other = slopes(s).T
  assert bool(jnp.all(-d_target >= floor)) and bool(jnp.all(-d_other >= floor))
  assert bool(jnp.all(-d_target <= jax.nn.sigmoid(-s) + 1e-4))


def test_a_bounded_table_stays_non_negative_for_huge_logits():
  # A DLN with a small learned scale: its residual carries most of cross-entropy's slope at the
  # grid's ends, which continued linearly would turn into a reward for ever larger logits.
  cfg = default_config().dln
  cfg.learn_scale = True
  dln = make_dln(cfg)
  flat, unravel = ravel_pytree(dln.init(jax.random.PRNGKey(0)))
  phi = dict(unravel(flat + 0.5 * jax.random.normal(jax.random.PRNGKey(1), flat.shape)))
  phi["log_scale"] = jnp.array(-2.0)
  table = make_table(dln, phi, SIZE, slope_bound=1.0)
  s = jnp.concatenate([-jnp.logspace(1, 7, 200), jnp.logspace(1, 7, 200)])
  target, other = _two_class_items(table, s)
  assert float(jnp.minimum(target, other).min()) > -1e-5


def test_item_logit_is_accurate_at_both_ends_and_finite_beyond():
  logits = jnp.array([[0.0, 30.0, -10.0], [5.0, 5.0 + 1e-3, -40.0], [0.0, 200.0, -200.0]])
  log_p, t = item_logit(logits)
  with jax.enable_x64(True):
    z = jnp.asarray(np.asarray(logits, np.float64))
    ref_log_p = jax.nn.log_softmax(z)
    others = jnp.stack([jax.nn.logsumexp(jnp.delete(z, c, axis=1), axis=1) for c in range(3)], 1)
    ref_t = z - others
  np.testing.assert_allclose(log_p[:2], ref_log_p[:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t[:2], ref_t[:2], rtol=1e-4)  # t = 30 is p = 1 - 1e-13
  assert bool(jnp.all(jnp.isfinite(t))) and bool(jnp.all(jnp.isfinite(log_p[:2])))
  grads = jax.grad(
    lambda l: table_loss(make_table(*moved_dln(0.2), SIZE), l, jnp.array([1, 0, 2]))
  )(logits)
  assert bool(jnp.all(jnp.isfinite(grads)))


@pytest.mark.parametrize("use_table", [True, False])
def test_second_derivatives_stay_finite_for_huge_logits(use_table):
  """A student that fits its training set drives logits far apart (every other class's
  probability underflows); the hypergradient then needs finite Hessian-vector products there."""
  dln, phi = moved_dln(0.1)
  labels = jnp.arange(8) % 10

  def loss(phi, logits):
    if use_table:
      return table_loss(make_table(dln, phi, SIZE), logits, labels)
    return dln.loss(phi, logits, labels)

  grad_z = jax.grad(loss, argnums=1)
  for scale in (100.0, 1000.0):
    logits = scale * jax.random.normal(jax.random.PRNGKey(2), (8, 10))
    v = jax.random.normal(jax.random.PRNGKey(4), logits.shape)
    hvp = jax.jvp(lambda z: grad_z(phi, z), (logits,), (v,))[1]
    mixed = jax.grad(lambda p: jnp.vdot(v, grad_z(p, logits)))(phi)  # noqa: B023 (used at once)
    assert jnp.all(jnp.isfinite(hvp)), scale
    assert jnp.all(jnp.isfinite(ravel_pytree(mixed)[0])), scale


@pytest.mark.parametrize("bound", [0.0, 1.0])
def test_the_written_out_derivatives_equal_automatic_differentiation_of_the_items(bound):
  """table_loss (derivatives by hand, for speed) against the same loss summed from
  table_item_values and differentiated automatically: the value, the gradients w.r.t. the logits
  and w.r.t. the DLN parameters through the table, and the two second derivatives a
  hypergradient takes (Hessian-vector product in the logits, mixed logits / parameters)."""
  dln, phi = moved_dln(0.3, learn_scale=True)
  labels = jnp.arange(64) % 10
  v = jax.random.normal(jax.random.PRNGKey(4), (64, 10))

  def derivatives(loss):
    def f(p, z):
      return loss(make_table(dln, p, SIZE, slope_bound=bound), z, labels)

    grad_z = jax.grad(f, argnums=1)
    return lambda p, z: (
      f(p, z),
      grad_z(p, z),
      jax.grad(f)(p, z),
      jax.grad(lambda zz: jnp.vdot(v, grad_z(p, zz)))(z),
      jax.grad(lambda pp: jnp.vdot(v, grad_z(pp, z)))(p),
    )

  fast = jax.jit(derivatives(table_loss))
  autodiff = jax.jit(derivatives(lambda t, z, l: table_item_values(t, z, l).sum(-1).mean()))
  for scale in (1.0, 30.0):  # moderate logits, and every other probability underflowing
    logits = scale * jax.random.normal(jax.random.PRNGKey(2), (64, 10))
    for a, b in zip(fast(phi, logits), autodiff(phi, logits)):
      a, b = ravel_pytree(a)[0], ravel_pytree(b)[0]
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))
