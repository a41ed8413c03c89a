"""The LSTM teacher: gradient preprocessing by its definition, and the shape of its steps.

The tests compute in one jitted program each (eagerly, every operation compiles a program of its
own); those that check shapes only trace (`jax.eval_shape`). The teacher is initialised eagerly: its
initialisers are jitted already, one program per shape that the LSTM cells share, where one jitted
program would compile each kernel's again.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2t_jax.teacher import (
  NUM_STATE_FEATURES,
  CoordinateLSTM,
  LSTMTeacher,
  cell_widths,
  coordinate_lstm,
  preprocess_gradient,
)

P = 10.0
preprocess = jax.jit(preprocess_gradient, static_argnums=1)  # one program for every scalar g


def expected(g, p=P):
  if abs(g) >= math.exp(-p):
    return (math.log(abs(g)) / p, math.copysign(1.0, g) if g != 0 else 0.0)
  return (-1.0, math.exp(p) * g)


@pytest.mark.parametrize(
  "g", [0.5, -3.0, 1.0, -1e-3, 1e-6, -2e-5, 0.0, 1e30, -1e30, math.exp(-P), -math.exp(-P) * 0.999]
)
def test_preprocess_matches_definition(g):
  with jax.enable_x64(True):
    out = np.asarray(preprocess(np.float64(g), P))
  np.testing.assert_allclose(out, expected(g), rtol=1e-12, atol=1e-300)


def test_preprocess_branches_and_finiteness_in_float32():
  g = np.array([0.0, 1e-30, 1e-5, 1e-4, 3.0, -1e30, 3e38], np.float32)
  out = np.asarray(preprocess(g, P))
  assert out.shape == (7, 2)
  assert np.all(np.isfinite(out))
  np.testing.assert_array_equal(out[:3, 0], -1.0)  # the small branch
  np.testing.assert_array_equal(out[3:, 1], np.sign(g[3:]))  # the large branch keeps the sign
  np.testing.assert_allclose(out[2, 1], math.exp(P) * 1e-5, rtol=1e-5)


def test_teacher_step_returns_updates_shaped_like_the_dln_and_scaled():
  small = LSTMTeacher(hidden=6, layers=2, output_scale=1e-3, preprocess_p=P)
  big = LSTMTeacher(hidden=6, layers=2, output_scale=1.0, preprocess_p=P)

  theta = small.init(jax.random.PRNGKey(0))

  @jax.jit
  def steps(theta):
    phi = {"a": jnp.zeros((3, 4)), "b": {"c": jnp.zeros((5,))}}
    grads = jax.tree_util.tree_map(lambda x: jnp.ones_like(x) * 0.01, phi)
    memory = small.init_state(phi)
    return phi, memory, small.step(theta, memory, grads), big.step(theta, memory, grads)

  phi, memory, (u_small, mem), (u_big, _) = steps(theta)
  assert memory[0][0].shape == (17, 6) and len(memory) == 2
  assert jax.tree_util.tree_structure(u_small) == jax.tree_util.tree_structure(phi)
  np.testing.assert_allclose(np.asarray(u_small["a"]) * 1e3, u_big["a"], rtol=1e-5)
  assert not np.allclose(mem[0][1], 0.0)  # the memory moved


def test_teacher_parameters_do_not_depend_on_the_dln_size():
  t = LSTMTeacher(hidden=6, layers=1, output_scale=1.0, preprocess_p=P)
  sizes = (1, 50)

  def updates():
    theta = t.init(jax.random.PRNGKey(0))
    phis = [jnp.zeros((d,)) for d in sizes]
    return [t.step(theta, t.init_state(phi), phi + 1.0)[0] for phi in phis]

  for d, u in zip(sizes, jax.eval_shape(updates)):
    assert u.shape == (d,)


def test_teacher_with_features_requires_them():
  t = LSTMTeacher(hidden=4, layers=1, output_scale=1.0, preprocess_p=P, num_features=4)

  def updates(features):
    theta = t.init(jax.random.PRNGKey(0))
    phi = jnp.zeros((3,))
    return t.step(theta, t.init_state(phi), phi, features)[0]

  with pytest.raises(ValueError, match="4 student-state features"):
    jax.eval_shape(updates, None)
  assert jax.eval_shape(updates, jax.ShapeDtypeStruct((4,), jnp.float32)).shape == (3,)


@pytest.mark.parametrize(
  "network, hidden, layers", [("lstm_readout", 6, 2), ("stacked_cells", 5, 3)]
)
def test_the_teachers_evaluation_equals_flaxs_lstm_cells(network, hidden, layers):
  """`coordinate_lstm` (coordinates along the minor axis) is `CoordinateLSTM.apply` (flax's
  OptimizedLSTMCell stack), from a memory that is not zero, on inputs with state features."""
  net = CoordinateLSTM(hidden=hidden, layers=layers, network=network)
  n, width = 37, 2 + NUM_STATE_FEATURES
  memory = tuple(
    (jnp.full((n, w), 0.3) * (i + 1), jnp.full((n, w), -0.2) * (i + 1))
    for i, w in enumerate(cell_widths(network, hidden, layers))
  )
  inputs = jax.random.normal(jax.random.PRNGKey(1), (n, width))
  theta = net.init(jax.random.PRNGKey(0), memory, inputs)["params"]
  # Biases are zero at initialisation: move them, so that their place in the sum is checked too.
  theta = jax.tree_util.tree_map_with_path(
    lambda path, x: x + 0.1 if "bias" in jax.tree_util.keystr(path) else x, theta
  )

  @jax.jit
  def both(theta, memory, inputs):
    return net.apply({"params": theta}, memory, inputs), coordinate_lstm(
      theta, memory, inputs, network
    )

  (mem_flax, out_flax), (mem_ours, out_ours) = both(theta, memory, inputs)
  assert out_ours.shape == out_flax.shape == (n,)
  np.testing.assert_allclose(out_ours, out_flax, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(mem_ours, mem_flax, rtol=1e-5, atol=1e-6)
  assert not np.allclose(out_flax, 0.0)
