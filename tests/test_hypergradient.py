"""Hypergradients equal central finite differences (float64, tiny student).

For the DLN: d L_val(w_K(phi)) / d phi through a K-step unroll with momentum SGD.
For the teacher: over a window of M teacher steps from fixed student states, the validation losses
after each step as a function of theta; the gradient `LSTMTeacher.surrogate_loss` gives must equal
their finite difference.

The tests compute in a few jitted programs (an eager operation compiles a program of its own): the
finite differences along every coordinate in one vmapped evaluation, the DLN's hypergradient in one
program per segment length, loss and options, shared by the tests.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from conftest import fast_jit
from l2t_jax import losses
from l2t_jax.dln import DLN, ItemNetwork
from l2t_jax.dln_table import make_table, table_loss
from l2t_jax.students import from_linen
from l2t_jax.students.mlp import MLP
from l2t_jax.teacher import LSTMTeacher
from l2t_jax.unroll import StudentState, UnrollOptions, hypergradient, unroll, validate_student

K, B, C, F_IN = 4, 6, 3, 5
EPS = 1e-6
STUDENT = from_linen(MLP(hidden=(7,), num_classes=C))
OPTIMIZER = optax.sgd(0.3, momentum=0.9)
DLN_NET = DLN(
  ItemNetwork(
    features=("log_p", "y", "y_log_p", "log_1mp"), hidden=(4,), skip_init=1.0, log_clip=20.0
  )
)


def to64(tree):
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def flat_size(tree) -> int:
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


def perturbed(tree, noise, scale):
  flat, unravel = ravel_pytree(tree)
  return unravel(flat + scale * noise)


def central_differences(f, flat):
  """(f(flat + EPS e_i) - f(flat - EPS e_i)) / (2 EPS) for every coordinate i, and f(flat): one
  vmapped evaluation of f at all 2n + 1 points."""
  steps = EPS * jnp.eye(flat.size, dtype=flat.dtype)
  values = jax.vmap(f)(jnp.concatenate([flat + steps, flat - steps, flat[None]]))
  return (values[: flat.size] - values[flat.size : -1]) / (2 * EPS), values[-1]


@fast_jit
def initial_state_and_dln(x0, phi_noise):
  """The student at its initialisation, and the DLN moved off its cross-entropy initialisation
  by `phi_noise` (one program for every test)."""
  params, _ = STUDENT.init(jax.random.PRNGKey(0), x0)
  params = to64(params)
  state = StudentState(params, {}, OPTIMIZER.init(params))
  return state, perturbed(to64(DLN_NET.init(jax.random.PRNGKey(1))), phi_noise, 0.3)


@pytest.fixture
def problem():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(K, B, F_IN))
    y = rng.integers(0, C, size=(K, B))
    val = {"x": rng.normal(size=(10, F_IN)), "y": rng.integers(0, C, 10)}
    # Off its cross-entropy initialisation, so that every DLN parameter matters.
    phi_noise = rng.normal(
      size=flat_size(jax.eval_shape(lambda: DLN_NET.init(jax.random.PRNGKey(1))))
    )
    state, phi = initial_state_and_dln(x[0], phi_noise)
    yield dict(
      student=STUDENT,
      optimizer=OPTIMIZER,
      dln=DLN_NET,
      batches={"x": x, "y": y},
      val=val,
      state=state,
      phi=phi,
      rng=rng,
    )


def val_after_segment(p, phi, state):
  new_state, _ = unroll(p["student"], p["optimizer"], p["dln"].loss, phi, state, p["batches"])
  return validate_student(p["student"], new_state, losses.cross_entropy, p["val"]).loss


def untabulated(phi):
  """The DLN's parameters as its loss takes them."""
  return phi


@functools.partial(fast_jit, static_argnames=("loss_fn", "prepare", "options"))
def dln_hypergradient(
  phi, state, batches, val, loss_fn=DLN_NET.loss, prepare=untabulated, options=UnrollOptions()
):
  """`hypergradient` of the DLN's parameters over a segment: one program per segment length,
  loss and options, shared by the tests."""
  return hypergradient(
    STUDENT,
    OPTIMIZER,
    loss_fn,
    losses.cross_entropy,
    phi,
    state,
    batches,
    val,
    prepare=prepare,
    options=options,
  )


@pytest.mark.parametrize("tabulated,slope_bound", [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_dln_hypergradient_equals_central_finite_difference(problem, tabulated, slope_bound):
  p = problem
  with jax.enable_x64(True):
    if tabulated:  # the DLN tabulated once per segment (bounded or not): the gradient flows
      # through the table
      loss_fn, prepare = table_loss, lambda phi: make_table(p["dln"], phi, 64, slope_bound)
    else:
      loss_fn, prepare = p["dln"].loss, untabulated
    hg = dln_hypergradient(
      p["phi"], p["state"], p["batches"], p["val"], loss_fn=loss_fn, prepare=prepare
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(hg.grads, p["phi"])  # one entry per parameter
    chex.assert_tree_all_finite(hg.grads)
    chex.assert_shape(hg.train.loss, (K,))  # the training loss of every unrolled step
    g = np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(hg.grads)])

    @fast_jit
    def finite_differences(phi, state):
      flat, unravel = ravel_pytree(phi)

      def val_loss(v):
        new_state, _ = unroll(
          p["student"], p["optimizer"], loss_fn, prepare(unravel(v)), state, p["batches"]
        )
        return validate_student(p["student"], new_state, losses.cross_entropy, p["val"]).loss

      return central_differences(val_loss, flat)

    fd, val_loss_at_phi = (np.asarray(a) for a in finite_differences(p["phi"], p["state"]))
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    assert np.abs(fd).max() > 1e-4  # the check is not vacuous
    np.testing.assert_allclose(hg.val.loss, val_loss_at_phi, rtol=1e-12)


@pytest.mark.parametrize("num_features", [0, 4])
def test_teacher_gradient_equals_central_finite_difference(problem, num_features):
  p = problem
  M = 3
  with jax.enable_x64(True):
    teacher = LSTMTeacher(
      hidden=3, layers=2, output_scale=0.05, preprocess_p=10.0, num_features=num_features
    )
    # Eagerly: the initialisers are jitted already, one program per shape that the cells share.
    theta0 = teacher.init(jax.random.PRNGKey(2))
    theta_noise = p["rng"].normal(size=flat_size(theta0))
    memory0 = jax.tree_util.tree_map(
      lambda a: p["rng"].normal(size=a.shape), jax.eval_shape(teacher.init_state, p["phi"])
    )
    phi_size = flat_size(p["phi"])
    in_grads = p["rng"].normal(size=(M, phi_size)) * 10.0 ** p["rng"].integers(
      -6, 0, size=(M, phi_size)
    )
    in_features = p["rng"].normal(size=(M, num_features))
    # A different fixed student state at the start of each segment: the student after the one
    # before, trained on the DLN phi0 (the shared program's `student`).
    states = [p["state"]]
    for _ in range(M - 1):
      states.append(dln_hypergradient(p["phi"], states[-1], p["batches"], p["val"]).student)

    @fast_jit
    def teacher_windows_and_finite_differences(
      theta0, theta_noise, memory0, in_grads, in_features, phi0, states
    ):
      """theta; the DLN after each teacher step; the finite differences in theta of the sum of the
      segments' validation losses."""
      theta = perturbed(to64(theta0), theta_noise, 0.1)
      phi0_flat, unravel = ravel_pytree(phi0)
      stacked_states = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)

      def dln_after_each_step(th):  # stacked over the steps
        memory, phi, out = memory0, phi0_flat, []
        for j in range(M):
          step = teacher.step_flat(
            th, memory, in_grads[j], in_features[j] if num_features else None
          )
          memory, phi = step.memory, phi + step.updates
          out.append(phi)
        return jnp.stack(out)

      def total_val_loss(th):
        return jax.vmap(lambda phi_j, s_j: val_after_segment(p, unravel(phi_j), s_j))(
          dln_after_each_step(th), stacked_states
        ).sum()

      theta_flat, unravel_theta = ravel_pytree(theta)
      fd, _ = central_differences(lambda v: total_val_loss(unravel_theta(v)), theta_flat)
      return theta, [unravel(phi_j) for phi_j in dln_after_each_step(theta)], fd

    theta, phis, fd = teacher_windows_and_finite_differences(
      theta0, theta_noise, memory0, in_grads, in_features, p["phi"], states
    )
    grads = [
      dln_hypergradient(phi_j, s_j, p["batches"], p["val"]).grads
      for phi_j, s_j in zip(phis, states)
    ]

    @fast_jit
    def surrogate_gradient(theta, memory0, in_grads, in_features, grads):
      out_grads = jnp.stack([ravel_pytree(g)[0] for g in grads])
      return ravel_pytree(
        jax.grad(teacher.surrogate_loss)(theta, memory0, in_grads, in_features, out_grads)
      )[0]

    g = surrogate_gradient(theta, memory0, in_grads, in_features, grads)
    fd = np.asarray(fd)
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-5, atol=1e-9)
    assert np.abs(fd).max() > 1e-5


@pytest.mark.parametrize("policy", ["step", "dots", "sqrt"])
def test_rematerialisation_does_not_change_the_hypergradient(problem, policy):
  p = problem
  with jax.enable_x64(True):
    # 7 steps: sqrt remat runs 2 blocks of 3 and a tail of 1.
    batches = jax.tree_util.tree_map(lambda x: np.concatenate([x, x[:3]]), p["batches"])
    ref, got = (
      dln_hypergradient(p["phi"], p["state"], batches, p["val"], options=UnrollOptions(remat=r))
      for r in ("none", policy)
    )
    chex.assert_trees_all_close(ref, got, rtol=1e-10, atol=1e-12)
    chex.assert_shape(ref.train.loss, (7,))
