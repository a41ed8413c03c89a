"""The examples: a user's own flax + optax loop taught by the public component, and an NNX student
with Dropout. The own loop must teach (the DLN and the teacher change) and give what the library's
driver gives on the same settings."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2t_jax as l2t
from configs import mnist1d_mlp
from examples import nnx_student, own_loop
from l2t_jax import losses
from l2t_jax.methods import gather
from l2t_jax.train import build_run, cycle_indices, device_data

STEPS = 60  # six segments of K = 10: the window (M = 5) is full once, so the teacher learns once


def test_own_loop_teaches_and_equals_the_library_driver_on_the_same_settings(fast_compiles):
  config = mnist1d_mlp.get_config()
  config.train.steps = STEPS + 10
  run = build_run(config)
  data = device_data(run.dataset)
  indices = list(cycle_indices(run, 0, config.train.steps // config.meta.interval))
  x0 = jnp.asarray(run.dataset.train.x[:1])
  # Placed as the driver places it, so that the cycle compiles once.
  state = run.parallel.replicate(run.method.init(jax.random.PRNGKey(config.seed), x0))
  cycle = jax.jit(run.method.cycle)
  for train_idx, val_idx in indices:
    state, _ = cycle(state, data, train_idx, val_idx)

  segments = [
    (gather(data["train_x"], data["train_y"], t), gather(data["val_x"], data["val_y"], v))
    for t, v in indices
  ]
  s, phi, taught = own_loop.teach(
    run.student,
    run.optimizer,
    l2t.make_student_loss(config.dln),
    l2t.make_teaching(config),
    losses.calibrated_ce,
    jax.random.PRNGKey(config.seed),
    x0,
    segments,
    config.train.steps,
  )
  _, rng_d, rng_t = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  phi0 = l2t.make_dln(config.dln).init(rng_d)
  teacher0 = l2t.make_teacher(config.teacher).init(rng_t)
  chex.assert_trees_all_close(s.params, state.student.params, rtol=1e-5, atol=1e-6)
  assert int(state.counters.teacher_updates) == 1  # the comparison covers a teacher update
  # The DLN, the teacher and its memory moved from where they started, the same way in both loops.
  # (They are compared to a share of how far they moved: the teacher reads the hypergradient's
  # log-magnitude and sign coordinate by coordinate, so a coordinate whose hypergradient is near
  # zero amplifies float rounding, which differs between the two programs as XLA compiles them.)
  for now, ref, start in (
    (phi, state.loss_params, phi0),
    (taught.teacher_params, state.teacher.teacher_params, teacher0),
    (taught.memory, state.teacher.memory, l2t.make_teacher(config.teacher).init_state(phi0)),
  ):
    chex.assert_trees_all_equal_shapes(now, start)
    leaves = [jax.tree_util.tree_leaves(t) for t in (now, ref, start)]
    moved = max(float(jnp.abs(b - c).max()) for b, c in zip(leaves[1], leaves[2]))
    apart = max(float(jnp.abs(a - b).max()) for a, b in zip(leaves[0], leaves[1]))
    assert moved > 1e-5
    assert apart <= 0.1 * moved, (apart, moved)


def test_nnx_student_with_dropout_is_taught():
  result = nnx_student.main(steps=20)
  assert 0.1 <= result["test_accuracy"] <= 1.0
  for leaf in jax.tree_util.tree_leaves((result["student"].params, result["loss_params"])):
    assert bool(jnp.all(jnp.isfinite(leaf)))


def test_dropout_masks_follow_the_rng_and_a_missing_rng_is_named():
  student = l2t.from_nnx(lambda rngs: nnx_student.DropoutMLP(rngs, width=16, rate=0.5))
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 40))
  params, model_state = student.init(jax.random.PRNGKey(1), x)
  out = [student.apply(params, model_state, x, True, jax.random.PRNGKey(k))[0] for k in (2, 2, 3)]
  chex.assert_trees_all_equal(out[0], out[1])
  assert not np.allclose(out[0], out[2])
  evaluation = student.apply(params, model_state, x, False)[0]  # no Dropout: no rng needed
  chex.assert_trees_all_equal(evaluation, student.apply(params, model_state, x, False)[0])
  with pytest.raises(ValueError, match="draws random numbers in training.*pass rng="):
    student.apply(params, model_state, x, True)
