"""The teaching component's contract, and the student's randomness (Dropout) through the driver.

(Its learning rules are checked where they have an exact answer: the window rule on a toy problem
in test_loop.py and against finite differences in test_hypergradient.py, the re-unroll rule
against finite differences in test_reunroll.py.)"""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import l2t_jax as l2t
from l2t_jax.train import build_run, cycle_indices, device_data
from tests.conftest import small_config


def _teaching(gradient="window", num_features=0):
  teacher = l2t.LSTMTeacher(
    hidden=4, layers=1, output_scale=1e-2, preprocess_p=10.0, num_features=num_features
  )
  return l2t.Teaching(teacher, optax.adam(1e-3), teacher_every=2, gradient=gradient)


def test_a_misused_teaching_component_says_what_is_wrong():
  with pytest.raises(ValueError, match="teacher.gradient='exact' is not one of"):
    _teaching("exact")
  phi = {"w": jnp.ones((3,))}
  window, reunroll = _teaching(), _teaching("reunroll")
  with pytest.raises(ValueError, match="'window' takes no outcome function"):
    window.update(
      phi, window.init(jax.random.PRNGKey(0), phi), phi, outcome=lambda p: (p["w"].sum(), ())
    )
  with pytest.raises(ValueError, match="'reunroll' needs an outcome function"):
    reunroll.update(phi, reunroll.init(jax.random.PRNGKey(0), phi), phi)
  with_features = _teaching(num_features=4)
  with pytest.raises(ValueError, match="takes 4 student-state features; pass features="):
    with_features.update(phi, with_features.init(jax.random.PRNGKey(0), phi), phi)


def test_a_non_finite_hypergradient_leaves_the_loss_and_the_teacher_where_they_were():
  teaching, phi = _teaching(), {"w": jnp.ones((3,))}
  state = teaching.init(jax.random.PRNGKey(0), phi)
  new_phi, new_state, info = teaching.update({"w": jnp.array([1.0, jnp.nan, 0.0])}, state, phi)
  assert not bool(info.applied) and not bool(info.teacher_updated)
  chex.assert_trees_all_equal(new_phi, phi)
  chex.assert_trees_all_equal(new_state.memory, state.memory)
  new_phi, _, info = teaching.update({"w": jnp.array([1e-3, -2e-3, 0.0])}, state, phi)
  assert bool(info.applied) and float(jnp.abs(new_phi["w"] - phi["w"]).max()) > 0


def _first_cycles(config, cycles=2, runs=1):
  """The state after `cycles` cycles, from `runs` fresh starts through one compiled cycle."""
  run = build_run(config)
  data = device_data(run.dataset)
  step = run.parallel.compile_cycle(run.method.cycle, config.train.fast_compile)
  states = []
  for _ in range(runs):
    state = run.parallel.replicate(  # placed as the driver places it: one compilation
      run.method.init(jax.random.PRNGKey(config.seed), jnp.asarray(run.dataset.train.x[:1]))
    )
    for train_idx, val_idx in cycle_indices(run, 0, cycles):
      state, _ = step(state, data, train_idx, val_idx)
    states.append(state)
  return states


def test_a_dropout_student_trains_under_the_driver_on_keys_of_the_seed_and_step():
  config = small_config(steps=20)
  config.student.dropout = 0.5
  first, again = _first_cycles(config, runs=2)
  chex.assert_trees_all_equal(first.student.params, again.student.params)  # deterministic
  config.student.dropout = 0.0
  (without,) = _first_cycles(config)
  differs = [
    float(jnp.abs(a - b).max())
    for a, b in zip(
      jax.tree_util.tree_leaves(first.student.params),
      jax.tree_util.tree_leaves(without.student.params),
    )
  ]
  assert max(differs) > 1e-4  # the masks reached the student
  for leaf in jax.tree_util.tree_leaves((first.student.params, first.loss_params)):
    assert bool(jnp.all(jnp.isfinite(leaf)))
