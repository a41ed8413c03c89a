"""The three-stage loop on a toy problem with a known answer, and its handling of non-finite
hypergradients.

Toy: the student is a vector w trained on the learned loss 0.5 |w - b|^2 (b is the learned loss's
parameter, starting at 0); the validation loss is 0.5 |w - w*|^2. Trained on the initial loss, the
student converges to b = 0 and the validation loss stays at 0.5 |w*|^2; the teacher has to learn to
move b so that the student reaches w*.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2t_jax.methods import Segments, dln_method
from l2t_jax.student_loss import FunctionLoss
from l2t_jax.students import Student
from l2t_jax.teacher import NUM_STATE_FEATURES, LSTMTeacher
from l2t_jax.teaching import Teaching

W_STAR = jnp.array([1.5, -2.0, 0.5, 3.0])
D = W_STAR.size
K = 5


def toy_student() -> Student:
  def init(rng, x):
    del rng, x
    return {"w": jnp.zeros((D,))}, {}

  def apply(params, model_state, x, train, rng=None):
    del train, rng
    return jnp.broadcast_to(params["w"], (x.shape[0], D)), model_state

  return Student(init=init, apply=apply, module=None)


def toy_loss(phi, outputs, labels):
  del labels
  return 0.5 * jnp.sum((outputs[0] - phi["b"]) ** 2)


def toy_val(outputs, labels):
  # Label 1 marks a poisoned validation example: the objective is NaN there.
  loss = 0.5 * jnp.sum((outputs[0] - W_STAR) ** 2)
  return jnp.where(labels[0] == 1, jnp.nan, loss)


def build(teacher_lr, cycles, teacher_every=2, output_scale=0.1):
  segments = Segments(
    student=toy_student(),
    optimizer=optax.sgd(0.2),
    val_fn=toy_val,
    unroll_steps=K,
    total_steps=cycles * K,
    initial_features=jnp.zeros((NUM_STATE_FEATURES,)),
  )
  teacher = LSTMTeacher(hidden=8, layers=1, output_scale=output_scale, preprocess_p=10.0)
  loss = FunctionLoss(lambda rng: {"b": jnp.zeros((D,))}, toy_loss)
  method = dln_method(
    segments, loss, Teaching(teacher, optax.adam(teacher_lr), teacher_every=teacher_every)
  )
  data = {
    "train_x": jnp.zeros((1, 1)),
    "train_y": jnp.zeros((1,), jnp.int32),
    "val_x": jnp.zeros((2, 1)),
    "val_y": jnp.array([0, 1], jnp.int32),
  }
  state = method.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
  return jax.jit(method.cycle), state, data


def run(teacher_lr, cycles, poison_at=(), output_scale=0.1):
  cycle, state, data = build(teacher_lr, cycles, output_scale=output_scale)
  train_idx = jnp.zeros((K, 1), jnp.int32)
  val_losses = []
  for c in range(cycles):
    val_idx = jnp.array([1 if c in poison_at else 0], jnp.int32)
    state, metrics = cycle(state, data, train_idx, val_idx)
    val_losses.append(float(metrics.val_loss))
  return state, np.array(val_losses)


def test_three_stage_loop_reaches_the_known_answer():
  cycles = 400
  state, val = run(teacher_lr=3e-2, cycles=cycles)
  initial = 0.5 * float(jnp.sum(W_STAR**2))
  np.testing.assert_allclose(val[0], initial, rtol=0.2)  # starts where the fixed loss leads
  assert val[-20:].mean() < 1e-3 * initial, val[-20:]
  np.testing.assert_allclose(state.student.params["w"], W_STAR, atol=0.05)
  assert int(state.counters.teacher_updates) >= cycles // 2 - 1
  assert int(state.counters.skipped_meta_updates) == 0


def test_without_teacher_learning_the_student_stays_at_the_initial_loss():
  _, val = run(teacher_lr=0.0, cycles=100)
  initial = 0.5 * float(jnp.sum(W_STAR**2))
  assert val[-20:].mean() > 0.5 * initial


def test_a_teacher_with_output_scale_zero_holds_the_loss_where_it_starts():
  # The suite's no-teaching control (teacher.output_scale=0): every segment still runs and is
  # differentiated, but the loss never moves, so the student trains on the initial loss alone.
  state, val = run(teacher_lr=3e-2, cycles=40, output_scale=0.0)
  np.testing.assert_array_equal(state.loss_params["b"], jnp.zeros((D,)))
  # (a step's outcome is the next segment's hypergradient: 39 outcomes make 19 windows of M = 2)
  assert int(state.counters.meta_updates) == 40 and int(state.counters.teacher_updates) == 19
  # Trained on 0.5 |w - 0|^2 from w = 0, the student stays at 0: the validation loss is constant.
  np.testing.assert_allclose(val, 0.5 * float(jnp.sum(W_STAR**2)), rtol=1e-6)


def test_non_finite_hypergradient_skips_the_update_and_training_goes_on():
  cycle, state, data = build(teacher_lr=3e-2, cycles=30)
  train_idx = jnp.zeros((K, 1), jnp.int32)
  ok_val, poisoned_val = jnp.array([0], jnp.int32), jnp.array([1], jnp.int32)
  for _ in range(4):
    state, _ = cycle(state, data, train_idx, ok_val)
  phi_before = state.loss_params["b"]
  memory_before = state.teacher.memory
  state, metrics = cycle(state, data, train_idx, poisoned_val)
  assert np.isnan(float(metrics.val_loss))
  assert int(state.counters.skipped_meta_updates) == 1
  np.testing.assert_array_equal(state.loss_params["b"], phi_before)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.teacher.memory, memory_before)
  for _ in range(10):
    state, metrics = cycle(state, data, train_idx, ok_val)
  assert int(state.counters.skipped_meta_updates) == 1
  assert int(state.counters.meta_updates) == 14
  for leaf in jax.tree_util.tree_leaves(
    (state.loss_params, state.teacher.teacher_params, state.student)
  ):
    assert bool(jnp.all(jnp.isfinite(leaf)))
  assert np.isfinite(float(metrics.val_loss))


def test_the_initial_state_compiled_quickly_equals_its_default_compilation():
  # methods.jit_init compiles the initial state with INIT_COMPILER_OPTIONS; the state must be the
  # same, bit for bit (the MLP's truncated-normal draws; the default compilation of a whole
  # L2T-DLN state, with the DLN and the teacher, takes 15 s here).
  from conftest import small_config
  from l2t_jax.build import build_method
  from l2t_jax.students import build_student

  config = small_config(method="ce")
  method = build_method(config, build_student(config.student, 10), optax.sgd(0.1), 10)
  x = jnp.zeros((1, 40))
  quick = method.init(jax.random.PRNGKey(5), x)
  # XLA's default level (3), named: an XLA_FLAGS that lowers it must not hide a difference
  default_level = {"xla_backend_optimization_level": 3}
  default = jax.jit(method.init.__wrapped__, compiler_options=default_level)(
    jax.random.PRNGKey(5), x
  )
  for a, b in zip(
    jax.tree_util.tree_leaves(quick), jax.tree_util.tree_leaves(default), strict=True
  ):
    np.testing.assert_array_equal(a, b)
