"""Hypergradients equal central finite differences (float64, tiny student).

For the DLN: d L_val(w_K(phi)) / d phi through a K-step unroll with momentum SGD.
For the teacher: over a window of M teacher steps from fixed student states, the validation losses
after each step as a function of theta; the gradient `LSTMTeacher.surrogate_loss` gives must equal
their finite difference.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from l2t_jax import losses
from l2t_jax.dln import DLN, ItemNetwork
from l2t_jax.dln_table import make_table, table_loss
from l2t_jax.students import from_linen
from l2t_jax.students.mlp import MLP
from l2t_jax.teacher import LSTMTeacher
from l2t_jax.unroll import StudentState, UnrollOptions, hypergradient, unroll, validate_student

K, B, C, F_IN = 4, 6, 3, 5
EPS = 1e-6


def to64(tree):
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def perturbed(tree, rng, scale):
  flat, unravel = ravel_pytree(tree)
  return unravel(flat + scale * jnp.asarray(rng.normal(size=flat.shape)))


@pytest.fixture
def problem():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    student = from_linen(MLP(hidden=(7,), num_classes=C))
    optimizer = optax.sgd(0.3, momentum=0.9)
    dln = DLN(
      ItemNetwork(
        features=("log_p", "y", "y_log_p", "log_1mp"), hidden=(4,), skip_init=1.0, log_clip=20.0
      )
    )
    x = jnp.asarray(rng.normal(size=(K, B, F_IN)))
    y = jnp.asarray(rng.integers(0, C, size=(K, B)))
    val = {"x": jnp.asarray(rng.normal(size=(10, F_IN))), "y": jnp.asarray(rng.integers(0, C, 10))}
    params, _ = student.init(jax.random.PRNGKey(0), x[0])
    params = to64(params)
    state = StudentState(params, {}, optimizer.init(params))
    # Off its cross-entropy initialisation, so that every DLN parameter matters.
    phi = perturbed(to64(dln.init(jax.random.PRNGKey(1))), rng, 0.3)
    yield dict(
      student=student,
      optimizer=optimizer,
      dln=dln,
      batches={"x": x, "y": y},
      val=val,
      state=state,
      phi=phi,
      rng=rng,
    )


def val_after_segment(p, phi, state):
  new_state, _ = unroll(p["student"], p["optimizer"], p["dln"].loss, phi, state, p["batches"])
  return validate_student(p["student"], new_state, losses.cross_entropy, p["val"]).loss


@pytest.mark.parametrize("tabulated,slope_bound", [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_dln_hypergradient_equals_central_finite_difference(problem, tabulated, slope_bound):
  p = problem
  with jax.enable_x64(True):
    if tabulated:  # the DLN tabulated once per segment (bounded or not): the gradient flows
      # through the table
      loss_fn, prepare = table_loss, lambda phi: make_table(p["dln"], phi, 64, slope_bound)
    else:
      loss_fn, prepare = p["dln"].loss, lambda phi: phi
    hg = hypergradient(
      p["student"],
      p["optimizer"],
      loss_fn,
      losses.cross_entropy,
      p["phi"],
      p["state"],
      p["batches"],
      p["val"],
      prepare=prepare,
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(hg.grads, p["phi"])  # one entry per parameter
    chex.assert_tree_all_finite(hg.grads)
    chex.assert_shape(hg.train.loss, (K,))  # the training loss of every unrolled step
    g, unravel = ravel_pytree(hg.grads)
    flat = ravel_pytree(p["phi"])[0]

    def val_loss(v):
      new_state, _ = unroll(
        p["student"], p["optimizer"], loss_fn, prepare(unravel(v)), p["state"], p["batches"]
      )
      return validate_student(p["student"], new_state, losses.cross_entropy, p["val"]).loss

    f = jax.jit(val_loss)
    fd = np.array(
      [(f(flat.at[i].add(EPS)) - f(flat.at[i].add(-EPS))) / (2 * EPS) for i in range(flat.size)]
    )
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-5, atol=1e-8)
    assert np.abs(fd).max() > 1e-4  # the check is not vacuous
    np.testing.assert_allclose(hg.val.loss, f(flat), rtol=1e-12)


@pytest.mark.parametrize("num_features", [0, 4])
def test_teacher_gradient_equals_central_finite_difference(problem, num_features):
  p = problem
  M = 3
  with jax.enable_x64(True):
    teacher = LSTMTeacher(
      hidden=3, layers=2, output_scale=0.05, preprocess_p=10.0, num_features=num_features
    )
    theta = perturbed(to64(teacher.init(jax.random.PRNGKey(2))), p["rng"], 0.1)
    phi0 = p["phi"]
    phi0_flat, unravel = ravel_pytree(phi0)
    memory0 = jax.tree_util.tree_map(
      lambda a: jnp.asarray(p["rng"].normal(size=a.shape)), teacher.init_state(phi0)
    )
    in_grads = jnp.asarray(
      p["rng"].normal(size=(M, phi0_flat.size))
      * 10.0 ** p["rng"].integers(-6, 0, size=(M, phi0_flat.size))
    )
    in_features = jnp.asarray(p["rng"].normal(size=(M, num_features)))
    # A different fixed student state at the start of each segment.
    states = [p["state"]]
    for _ in range(M - 1):
      states.append(
        unroll(p["student"], p["optimizer"], p["dln"].loss, phi0, states[-1], p["batches"])[0]
      )

    def dln_after_each_step(th):
      memory, phi, out = memory0, phi0_flat, []
      for j in range(M):
        step = teacher.step_flat(th, memory, in_grads[j], in_features[j] if num_features else None)
        memory, phi = step.memory, phi + step.updates
        out.append(phi)
      return out

    def total_val_loss(th):
      return sum(
        val_after_segment(p, unravel(phi_j), s_j)
        for phi_j, s_j in zip(dln_after_each_step(th), states)
      )

    out_grads = jnp.stack(
      [
        ravel_pytree(
          hypergradient(
            p["student"],
            p["optimizer"],
            p["dln"].loss,
            losses.cross_entropy,
            unravel(phi_j),
            s_j,
            p["batches"],
            p["val"],
          ).grads
        )[0]
        for phi_j, s_j in zip(dln_after_each_step(theta), states)
      ]
    )
    g = ravel_pytree(
      jax.grad(teacher.surrogate_loss)(theta, memory0, in_grads, in_features, out_grads)
    )[0]
    theta_flat, unravel_theta = ravel_pytree(theta)
    f = jax.jit(lambda v: total_val_loss(unravel_theta(v)))
    fd = np.array(
      [
        (f(theta_flat.at[i].add(EPS)) - f(theta_flat.at[i].add(-EPS))) / (2 * EPS)
        for i in range(theta_flat.size)
      ]
    )
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-5, atol=1e-9)
    assert np.abs(fd).max() > 1e-5


@pytest.mark.parametrize("policy", ["step", "dots", "sqrt"])
def test_rematerialisation_does_not_change_the_hypergradient(problem, policy):
  p = problem
  with jax.enable_x64(True):
    # 7 steps: sqrt remat runs 2 blocks of 3 and a tail of 1.
    batches = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x[:3]]), p["batches"])
    ref, got = (
      hypergradient(
        p["student"],
        p["optimizer"],
        p["dln"].loss,
        losses.cross_entropy,
        p["phi"],
        p["state"],
        batches,
        p["val"],
        options=UnrollOptions(remat=r),
      )
      for r in ("none", policy)
    )
    chex.assert_trees_all_close(ref, got, rtol=1e-10, atol=1e-12)
    chex.assert_shape(ref.train.loss, (7,))
