"""The DLN at initialisation is cross-entropy: same loss, same gradients, any number of classes.

Each test computes what it compares in jitted functions and checks the results with NumPy: run
eagerly, every operation compiled a program of its own, most of this file's time."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from l2t_jax import losses
from l2t_jax.students import from_linen
from l2t_jax.students.mlp import MLP
from tests.conftest import dln_of, dln_phi, fast_jit


@functools.partial(fast_jit, static_argnums=0)
def _dln_and_ce(learn_scale, phi, logits, labels):
  """The DLN's and cross-entropy's losses and logits' gradients."""
  dln = dln_of(learn_scale)
  return (
    dln.loss(phi, logits, labels),
    losses.cross_entropy(logits, labels),
    jax.grad(lambda l: dln.loss(phi, l, labels))(logits),
    jax.grad(lambda l: losses.cross_entropy(l, labels))(logits),
  )


@pytest.mark.parametrize(
  "num_classes,learn_scale", [(2, False), (10, False), (37, False), (10, True)]
)
def test_dln_at_init_equals_cross_entropy(num_classes, learn_scale):
  rng = np.random.default_rng(num_classes)
  logits = np.asarray(3.0 * rng.normal(size=(64, num_classes)), np.float32)
  labels = rng.integers(0, num_classes, size=64)
  loss_dln, loss_ce, g_dln, g_ce = _dln_and_ce(learn_scale, dln_phi(learn_scale), logits, labels)
  np.testing.assert_allclose(loss_dln, loss_ce, rtol=1e-6)
  np.testing.assert_allclose(g_dln, g_ce, rtol=1e-5, atol=1e-7)


@fast_jit
def _student_gradients(phi):
  """The gradients of a student's parameters under the DLN and under cross-entropy, flattened."""
  dln = dln_of()
  student = from_linen(MLP(hidden=(32,), num_classes=10))
  x = jax.random.normal(jax.random.PRNGKey(2), (16, 40, 1))
  y = jax.random.randint(jax.random.PRNGKey(3), (16,), 0, 10)
  params, state = student.init(jax.random.PRNGKey(4), x)

  def grads(loss_fn):
    return jax.grad(lambda p: loss_fn(student.apply(p, state, x, True)[0], y))(params)

  return (
    ravel_pytree(grads(lambda l, t: dln.loss(phi, l, t)))[0],
    ravel_pytree(grads(losses.cross_entropy))[0],
  )


def test_dln_at_init_gives_the_student_the_cross_entropy_gradient():
  g_dln, g_ce = _student_gradients(dln_phi(False, 1))
  np.testing.assert_allclose(g_dln, g_ce, rtol=1e-5, atol=1e-7)


@fast_jit
def _item_by_item(phi):
  """A 3-class loss and its sum of item values, the item value of a class at p = 0 that is not
  the target, and the loss with 97 such classes added."""
  dln = dln_of()
  logits = 2.0 * jax.random.normal(jax.random.PRNGKey(2), (4, 3))
  labels = jnp.array([0, 1, 2, 0])
  by_item = dln.item_loss(phi, jax.nn.softmax(logits), jax.nn.one_hot(labels, 3)).sum(-1).mean()
  empty = dln.item_loss(phi, jnp.zeros(()), jnp.zeros(()))
  wide = jnp.concatenate([logits, jnp.full((4, 97), -1e4)], axis=-1)
  return dln.loss(phi, logits, labels), by_item, empty, dln.loss(phi, wide, labels)


def test_one_dln_scores_any_number_of_classes_item_by_item():
  """The loss is the mean over samples of the sum over classes of one function of (p_c, y_c): the
  same phi serves 3 classes and 100, and classes without probability add their item value each."""
  loss3, by_item, empty, loss100 = _item_by_item(dln_phi(False, 0, 0.1))  # MLP active
  np.testing.assert_allclose(loss3, by_item, rtol=1e-5)
  assert abs(float(empty)) > 1e-3  # the 97 classes below change the loss
  np.testing.assert_allclose(loss100, np.asarray(loss3) + 97 * np.asarray(empty), rtol=1e-5)


def logits_and_labels():
  return jax.random.normal(jax.random.PRNGKey(2), (8, 10)), np.arange(8) % 10


def test_dln_moved_off_init_differs_from_cross_entropy():
  loss_dln, loss_ce, _, _ = _dln_and_ce(False, dln_phi(False, 0, 0.1), *logits_and_labels())
  assert abs(float(loss_dln) - float(loss_ce)) > 1e-3


def test_the_learned_scale_multiplies_the_whole_loss():
  phi = dln_phi(True, 0, 0.1)
  doubled = dict(phi, log_scale=np.asarray(phi["log_scale"]) + np.log(np.float32(2.0)))
  loss = np.asarray(_dln_and_ce(True, phi, *logits_and_labels())[0])
  np.testing.assert_allclose(
    _dln_and_ce(True, doubled, *logits_and_labels())[0], 2 * loss, rtol=1e-5
  )


def test_dln_refuses_labels_that_do_not_fit_the_logits():
  with pytest.raises(ValueError, match="do not fit logits"):
    dln_of().loss(dln_phi(False), jnp.zeros((4, 10)), jnp.zeros((4, 10), jnp.int32))
