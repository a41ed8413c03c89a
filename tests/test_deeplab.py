"""The segmentation student and its per-pixel losses: full-resolution logits, the ignore label left
out of the loss, and the DLN at initialisation equal to per-pixel cross-entropy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2t_jax import dln as dln_lib
from l2t_jax.config import default_config
from l2t_jax.item_losses import ce_items, masked_pixel_loss
from l2t_jax.students import deeplab, from_linen

IGNORE = 255


def test_logits_come_at_the_input_resolution_from_stride_8_features():
  student = from_linen(deeplab.DeepLab(num_classes=5, blocks=(1, 1, 1, 1), width=4))
  variables = jax.eval_shape(student.init, jax.random.PRNGKey(0), jnp.zeros((1, 40, 56, 3)))
  logits, _ = jax.eval_shape(
    lambda v: student.apply(*v, jnp.zeros((2, 40, 56, 3)), True), variables
  )
  assert logits.shape == (2, 40, 56, 5)
  full = jax.eval_shape(
    deeplab.DeepLab(num_classes=21).init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))
  )
  convs = [
    k
    for k, _ in jax.tree_util.tree_leaves_with_path(full["params"])
    if jax.tree_util.keystr(k).endswith("['kernel']")
  ]
  # ResNet-18's 17 3x3/7x7 convolutions and 3 projections; ASPP's 5, the mix, the 3x3 and
  # the classifier.
  assert len(convs) == 17 + 3 + 5 + 3


def random_case(key, shape=(2, 6, 7), classes=4):
  k1, k2, k3 = jax.random.split(key, 3)
  logits = 3 * jax.random.normal(k1, shape + (classes,))
  labels = jax.random.randint(k2, shape, 0, classes)
  labels = jnp.where(jax.random.bernoulli(k3, 0.3, shape), IGNORE, labels)
  return logits, labels


def test_ignored_pixels_add_nothing_and_the_rest_is_per_pixel_cross_entropy():
  logits, labels = random_case(jax.random.PRNGKey(0))
  keep = labels != IGNORE
  loss, grad = jax.jit(
    jax.value_and_grad(lambda z: masked_pixel_loss(ce_items, z, labels, IGNORE))
  )(logits)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits[keep], labels[keep])
  np.testing.assert_allclose(loss, ce.sum() / labels.size, rtol=1e-5)
  # A mean over images, whatever their ignored pixels: a batch split over devices gives the whole
  # batch's loss and gradient.
  halves = [
    masked_pixel_loss(ce_items, logits[i : i + 1], labels[i : i + 1], IGNORE) for i in (0, 1)
  ]
  assert int(keep[0].sum()) != int(keep[1].sum())
  np.testing.assert_allclose(loss, np.mean(halves), rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(grad)[~np.asarray(keep)], 0.0)
  assert np.abs(np.asarray(grad)[np.asarray(keep)]).max() > 0


def test_the_dln_at_initialisation_is_per_pixel_cross_entropy():
  logits, labels = random_case(jax.random.PRNGKey(1))
  dln = dln_lib.make_dln(default_config().dln)
  phi = dln.init(jax.random.PRNGKey(2))

  @jax.jit
  def both(z):
    standard = jax.value_and_grad(lambda v: masked_pixel_loss(ce_items, v, labels, IGNORE))(z)
    learned = jax.value_and_grad(
      lambda v: masked_pixel_loss(functools.partial(dln.item_values, phi), v, labels, IGNORE)
    )(z)
    return standard, learned

  (s, gs), (d, gd) = both(logits)
  np.testing.assert_allclose(d, s, rtol=1e-5)
  np.testing.assert_allclose(gd, gs, rtol=1e-4, atol=1e-7)
