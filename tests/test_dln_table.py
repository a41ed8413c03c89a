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


def moved_dln(scale, seed=1):
  dln = make_dln(default_config().dln)
  flat, unravel = ravel_pytree(dln.init(jax.random.PRNGKey(0)))
  return dln, unravel(flat + scale * jax.random.normal(jax.random.PRNGKey(seed), flat.shape))


def test_tabulated_dln_at_init_is_cross_entropy_exactly():
  dln = make_dln(default_config().dln)
  table = make_table(dln, dln.init(jax.random.PRNGKey(0)), SIZE)
  logits = 4.0 * jax.random.normal(jax.random.PRNGKey(2), (64, 10))
  labels = jnp.arange(64) % 10
  np.testing.assert_allclose(table_loss(table, logits, labels),
                             losses.cross_entropy(logits, labels), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda l: table_loss(table, l, labels))(logits),
                             jax.grad(lambda l: losses.cross_entropy(l, labels))(logits),
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("logit_scale", [1.0, 8.0])
def test_tabulated_dln_matches_the_exact_dln(logit_scale):
  dln, phi = moved_dln(0.2)
  table = make_table(dln, phi, SIZE)
  logits = logit_scale * jax.random.normal(jax.random.PRNGKey(3), (256, 10))
  labels = jnp.arange(256) % 10
  exact = dln.item_values(phi, logits, labels)
  assert float(jnp.abs(exact - jax.nn.one_hot(labels, 10) * -jax.nn.log_softmax(logits)).max()) > 1e-2
  # Near p = 1 the exact DLN's own float32 log p is off by ~1e-6, which moves its log(1 - p)
  # feature; the table works from an accurate item logit instead, hence the 5e-4.
  np.testing.assert_allclose(table_item_values(table, logits, labels), exact, atol=5e-4)
  g_exact = jax.grad(lambda l: dln.loss(phi, l, labels))(logits)
  g_table = jax.grad(lambda l: table_loss(table, l, labels))(logits)
  assert float(jnp.abs(g_table - g_exact).max() / jnp.abs(g_exact).max()) < 2e-3
  gp_exact = ravel_pytree(jax.grad(lambda p: dln.loss(p, logits, labels))(phi))[0]
  gp_table = ravel_pytree(jax.grad(lambda p: table_loss(make_table(dln, p, SIZE), logits,
                                                        labels))(phi))[0]
  assert float(jnp.linalg.norm(gp_table - gp_exact) / jnp.linalg.norm(gp_exact)) < 1e-3


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
  grads = jax.grad(lambda l: table_loss(make_table(*moved_dln(0.2), SIZE), l,
                                        jnp.array([1, 0, 2])))(logits)
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
    mixed = jax.grad(lambda p: jnp.vdot(v, grad_z(p, logits)))(phi)
    assert jnp.all(jnp.isfinite(hvp)), scale
    assert jnp.all(jnp.isfinite(ravel_pytree(mixed)[0])), scale
