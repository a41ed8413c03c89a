"""The DLN at initialisation is cross-entropy: same loss, same gradients, any number of classes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from l2t_jax import losses
from l2t_jax.config import default_config
from l2t_jax.dln import make_dln
from l2t_jax.students import from_linen
from l2t_jax.students.mlp import MLP


@pytest.mark.parametrize(
  "num_classes,learn_scale", [(2, False), (10, False), (37, False), (10, True)]
)
def test_dln_at_init_equals_cross_entropy(num_classes, learn_scale):
  cfg = default_config().dln
  cfg.learn_scale = learn_scale
  dln = make_dln(cfg)
  phi = dln.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(num_classes)
  logits = jnp.asarray(3.0 * rng.normal(size=(64, num_classes)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, num_classes, size=64))
  np.testing.assert_allclose(
    dln.loss(phi, logits, labels), losses.cross_entropy(logits, labels), rtol=1e-6
  )
  g_dln = jax.grad(lambda l: dln.loss(phi, l, labels))(logits)
  g_ce = jax.grad(lambda l: losses.cross_entropy(l, labels))(logits)
  np.testing.assert_allclose(g_dln, g_ce, rtol=1e-5, atol=1e-7)


def test_dln_at_init_gives_the_student_the_cross_entropy_gradient():
  dln = make_dln(default_config().dln)
  phi = dln.init(jax.random.PRNGKey(1))
  student = from_linen(MLP(hidden=(32,), num_classes=10))
  x = jax.random.normal(jax.random.PRNGKey(2), (16, 40, 1))
  y = jax.random.randint(jax.random.PRNGKey(3), (16,), 0, 10)
  params, state = student.init(jax.random.PRNGKey(4), x)

  def grads(loss_fn):
    return jax.grad(lambda p: loss_fn(student.apply(p, state, x, True)[0], y))(params)

  g_dln = ravel_pytree(grads(lambda l, t: dln.loss(phi, l, t)))[0]
  g_ce = ravel_pytree(grads(losses.cross_entropy))[0]
  np.testing.assert_allclose(g_dln, g_ce, rtol=1e-5, atol=1e-7)


def test_one_dln_scores_any_number_of_classes_item_by_item():
  """The loss is the mean over samples of the sum over classes of one function of (p_c, y_c): the
  same phi serves 3 classes and 100, and classes without probability add their item value each."""
  dln = make_dln(default_config().dln)
  flat, unravel = ravel_pytree(dln.init(jax.random.PRNGKey(0)))
  phi = unravel(flat + 0.1 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))  # MLP active
  logits = 2.0 * jax.random.normal(jax.random.PRNGKey(2), (4, 3))
  labels = jnp.array([0, 1, 2, 0])
  loss3 = dln.loss(phi, logits, labels)
  by_item = dln.item_loss(phi, jax.nn.softmax(logits), jax.nn.one_hot(labels, 3)).sum(-1).mean()
  np.testing.assert_allclose(loss3, by_item, rtol=1e-5)
  empty = dln.item_loss(phi, jnp.zeros(()), jnp.zeros(()))  # a class at p = 0, not the target
  assert abs(float(empty)) > 1e-3  # the 97 classes below change the loss
  wide = jnp.concatenate([logits, jnp.full((4, 97), -1e4)], axis=-1)
  np.testing.assert_allclose(dln.loss(phi, wide, labels), loss3 + 97 * empty, rtol=1e-5)


def test_dln_moved_off_init_differs_from_cross_entropy():
  dln = make_dln(default_config().dln)
  phi = dln.init(jax.random.PRNGKey(0))
  flat, unravel = ravel_pytree(phi)
  moved = unravel(flat + 0.1 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
  logits = jax.random.normal(jax.random.PRNGKey(2), (8, 10))
  labels = jnp.arange(8) % 10
  assert abs(float(dln.loss(moved, logits, labels) - losses.cross_entropy(logits, labels))) > 1e-3


def test_the_learned_scale_multiplies_the_whole_loss():
  cfg = default_config().dln
  cfg.learn_scale = True
  dln = make_dln(cfg)
  flat, unravel = ravel_pytree(dln.init(jax.random.PRNGKey(0)))
  phi = unravel(flat + 0.1 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
  logits = jax.random.normal(jax.random.PRNGKey(2), (8, 10))
  labels = jnp.arange(8) % 10
  doubled = dict(phi, log_scale=phi["log_scale"] + jnp.log(2.0))
  np.testing.assert_allclose(
    dln.loss(doubled, logits, labels), 2 * dln.loss(phi, logits, labels), rtol=1e-5
  )


def test_dln_refuses_labels_that_do_not_fit_the_logits():
  dln = make_dln(default_config().dln)
  phi = dln.init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="do not fit logits"):
    dln.loss(phi, jnp.zeros((4, 10)), jnp.zeros((4, 10), jnp.int32))
