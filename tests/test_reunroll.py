"""The authors' meta-iteration (`teacher.gradient="reunroll"`, `meta.continue_from`).

One cycle, in float64 on a tiny MLP student: the teacher's gradient the cycle applies equals the
central finite difference of the meta-iteration as a function of theta (first unroll -> g, which
theta does not change -> teacher -> phi' -> second unroll of the same batches from the same start
-> validation loss on the same validation batch); the DLN keeps phi' and the student continues
from the second unroll (`meta.continue_from="reunroll"`), or from the first when the proposal is
refused. Non-finite values skip and count; the config refuses combinations that mean nothing; the
driver runs the exact gradient with our continuation.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from conftest import small_config
from l2t_jax import losses
from l2t_jax.config import ConfigError, validate
from l2t_jax.data import Dataset, Split
from l2t_jax.dln import DLN, ItemNetwork
from l2t_jax.methods import Segments, dln_method
from l2t_jax.students import from_linen
from l2t_jax.students.mlp import MLP
from l2t_jax.student_loss import StudentLoss
from l2t_jax.teacher import LSTMTeacher
from l2t_jax.teaching import Teaching
from l2t_jax.train import train
from l2t_jax.unroll import unroll, validate_student

K, B, C, F_IN, N_TRAIN, N_VAL = 3, 5, 3, 4, 20, 8
INTERVAL = K + 1  # one plain step after the segment, on the DLN the cycle leaves
EPS = 1e-5


def to64(tree):
  return jax.tree_util.tree_map(
    lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
  )


def perturbed(tree, rng, scale):
  flat, unravel = ravel_pytree(tree)
  return unravel(flat + scale * jnp.asarray(rng.normal(size=flat.shape), flat.dtype))


def tiny_problem(teacher_opt):
  """float64, the authors' continuation: method, start state (DLN, teacher and LSTM memory moved
  off their initial values so that every coordinate matters), data and one cycle's indices."""
  rng = np.random.default_rng(0)
  student = from_linen(MLP(hidden=(6,), num_classes=C))
  optimizer = optax.sgd(0.3, momentum=0.9)
  dln = DLN(
    ItemNetwork(
      features=("log_p", "y", "y_log_p", "log_1mp"), hidden=(3,), skip_init=1.0, log_clip=20.0
    )
  )
  teacher = LSTMTeacher(hidden=2, layers=2, output_scale=1.0, preprocess_p=10.0, num_features=4)
  setup = Segments(
    student=student,
    optimizer=optimizer,
    val_fn=losses.cross_entropy,
    unroll_steps=K,
    total_steps=10 * INTERVAL,
    initial_features=jnp.zeros((4,)),
  )
  method = dln_method(
    setup,
    StudentLoss(dln),
    Teaching(teacher, teacher_opt, gradient="reunroll"),
    continue_from="reunroll",
  )
  data = {
    "train_x": jnp.asarray(rng.normal(size=(N_TRAIN, F_IN))),
    "train_y": jnp.asarray(rng.integers(0, C, N_TRAIN), jnp.int32),
    "val_x": jnp.asarray(rng.normal(size=(N_VAL, F_IN))),
    "val_y": jnp.asarray(rng.integers(0, C, N_VAL), jnp.int32),
  }
  state = to64(method.init(jax.random.PRNGKey(0), data["train_x"][:1]))
  state = state._replace(
    loss_params=perturbed(state.loss_params, rng, 0.3),
    teacher=state.teacher._replace(
      teacher_params=perturbed(state.teacher.teacher_params, rng, 0.3),
      memory=jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.normal(size=a.shape)), state.teacher.memory
      ),
    ),
  )
  train_idx = jnp.asarray(rng.integers(0, N_TRAIN, (INTERVAL, B)), jnp.int32)
  val_idx = jnp.asarray(rng.permutation(N_VAL)[:6], jnp.int32)
  return dict(
    method=method,
    state=state,
    data=data,
    train_idx=train_idx,
    val_idx=val_idx,
    student=student,
    optimizer=optimizer,
    dln=dln,
    teacher=teacher,
    setup=setup,
  )


class Manual:
  """The meta-iteration written out from the primitives, for the cycle of `p` from `state`."""

  def __init__(self, p, state):
    s, data = p["student"], p["data"]
    batches = {"x": data["train_x"][p["train_idx"]], "y": data["train_y"][p["train_idx"]]}
    seg = jax.tree_util.tree_map(lambda a: a[:K], batches)
    rest = jax.tree_util.tree_map(lambda a: a[K:], batches)
    val = {"x": data["val_x"][p["val_idx"]], "y": data["val_y"][p["val_idx"]]}
    self.phi0, self.unravel = ravel_pytree(state.loss_params)

    def after_segment(phi_flat):  # the student after the K steps, and its validation
      end, stats = unroll(
        s, p["optimizer"], p["dln"].loss, self.unravel(phi_flat), state.student, seg
      )
      return validate_student(s, end, losses.cross_entropy, val), end, stats

    first, self.first_end, first_stats = jax.jit(after_segment)(self.phi0)
    g = jax.jit(jax.grad(lambda v: after_segment(v)[0].loss))(self.phi0)
    progress = (state.step + K) / p["setup"].total_steps
    features = jnp.array([progress, first_stats.ce.mean(), first.loss, first.accuracy], jnp.float32)
    self.proposal = lambda theta: p["teacher"].step_flat(theta, state.teacher.memory, g, features)
    self.after_segment = after_segment
    self.plain_steps = lambda phi, start: unroll(
      s, p["optimizer"], p["dln"].loss, phi, start, rest
    )[0]

  def meta_loss(self, theta):
    return self.after_segment(self.phi0 + self.proposal(theta).updates)[0].loss

  def student_after_cycle(self, theta, kept):
    """The student at the end of the cycle: the second unroll's end, then the plain steps on the
    proposed DLN; or, when the proposal is not `kept`, the first unroll's, then phi's."""
    if not kept:
      return self.plain_steps(self.unravel(self.phi0), self.first_end)
    phi1 = self.phi0 + self.proposal(theta).updates
    return self.plain_steps(self.unravel(phi1), self.after_segment(phi1)[1])


def assert_trees_close(a, b, **tol):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.fixture(scope="module")
def problem():
  """float64, the authors' continuation, the teacher optimizer plain SGD at rate 1 (so that the
  teacher's step is minus its gradient); the cycle compiled once for the module."""
  with jax.enable_x64(True):
    p = tiny_problem(optax.sgd(1.0))
    p["cycle"] = jax.jit(p["method"].cycle)
    yield p


def test_teacher_gradient_equals_finite_differences_and_the_student_continues_from_phi_prime(
  problem,
):
  p = problem
  with jax.enable_x64(True):
    state, _ = p["cycle"](p["state"], p["data"], p["train_idx"], p["val_idx"])
    m = Manual(p, p["state"])
    theta0 = p["state"].teacher.teacher_params
    theta_flat, unravel_theta = ravel_pytree(theta0)
    got = theta_flat - ravel_pytree(state.teacher.teacher_params)[0]
    f = jax.jit(lambda v: m.meta_loss(unravel_theta(v)))
    fd = np.array(
      [
        (f(theta_flat.at[i].add(EPS)) - f(theta_flat.at[i].add(-EPS))) / (2 * EPS)
        for i in range(theta_flat.size)
      ]
    )
    assert got.dtype == jnp.float64 and np.abs(fd).max() > 1e-3  # not vacuous
    assert np.linalg.norm(got - fd) < 1e-6 * np.linalg.norm(fd)
    np.testing.assert_allclose(np.asarray(got), fd, rtol=1e-4, atol=1e-9)

    step = jax.jit(m.proposal)(theta0)
    assert_trees_close(state.loss_params, m.unravel(m.phi0 + step.updates), rtol=1e-12)
    assert_trees_close(state.teacher.memory, step.memory, rtol=1e-12)  # the LSTM memory moves on
    after_cycle = jax.jit(m.student_after_cycle, static_argnums=1)
    assert_trees_close(state.student, after_cycle(theta0, True), rtol=1e-10, atol=1e-12)
    c = state.counters
    assert (
      int(c.meta_updates),
      int(c.teacher_updates),
      int(c.skipped_meta_updates),
      int(c.skipped_teacher_updates),
    ) == (1, 1, 0, 0)


def test_non_finite_values_skip_the_update_and_the_student_keeps_the_first_unroll(problem):
  p = problem
  with jax.enable_x64(True):
    cycle, data, state = p["cycle"], p["data"], p["state"]
    # A teacher whose output is infinite: the proposal is refused, the teacher takes no step and
    # the student goes on from the unroll on the DLN it had.
    theta = state.teacher.teacher_params
    broken = {**theta, "readout": {**theta["readout"], "bias": theta["readout"]["bias"] + jnp.inf}}
    start = state._replace(teacher=state.teacher._replace(teacher_params=broken))
    state, metrics = cycle(start, data, p["train_idx"], p["val_idx"])
    after_cycle = jax.jit(Manual(p, start).student_after_cycle, static_argnums=1)
    assert_trees_close(state.student, after_cycle(broken, False), rtol=1e-10, atol=1e-12)
    assert math.isfinite(float(metrics.val_loss))
    # A NaN in the validation batch: g is NaN.
    poisoned = {**data, "val_x": data["val_x"].at[p["val_idx"][0]].set(jnp.nan)}
    state, metrics = cycle(state, poisoned, p["train_idx"], p["val_idx"])
    assert math.isnan(float(metrics.val_loss))
    c = state.counters
    assert (int(c.meta_updates), int(c.skipped_meta_updates), int(c.teacher_updates)) == (0, 2, 0)
    assert_trees_close(state.loss_params, p["state"].loss_params, rtol=0)
    assert_trees_close(state.teacher.memory, p["state"].teacher.memory, rtol=0)
    # no step on a non-finite gradient
    assert_trees_close(state.teacher.teacher_params, broken, rtol=0)
    restored = state._replace(teacher=state.teacher._replace(teacher_params=theta))
    state, metrics = cycle(restored, data, p["train_idx"], p["val_idx"])
    c = state.counters
    assert (
      int(c.meta_updates),
      int(c.skipped_meta_updates),
      int(c.teacher_updates),
      int(c.skipped_teacher_updates),
    ) == (1, 2, 1, 0)
    for leaf in jax.tree_util.tree_leaves(
      (state.student, state.loss_params, state.teacher.teacher_params)
    ):
      assert bool(jnp.all(jnp.isfinite(leaf)))


@pytest.mark.parametrize(
  "gradient,continue_from,message",
  [
    (
      "window",
      "reunroll",
      "meta.continue_from='reunroll' continues from the second unroll, which "
      "only teacher.gradient='reunroll' runs: set teacher.gradient='reunroll' or "
      "meta.continue_from='unroll'",
    ),
    ("exact", "unroll", "teacher.gradient='exact' is not one of"),
    ("reunroll", "second", "meta.continue_from='second' is not one of"),
  ],
)
def test_meaningless_combinations_are_refused(gradient, continue_from, message):
  config = small_config()
  config.teacher.gradient, config.meta.continue_from = gradient, continue_from
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(config)
  for gradient, continue_from in (
    ("window", "unroll"),
    ("reunroll", "unroll"),
    ("reunroll", "reunroll"),
  ):
    config.teacher.gradient, config.meta.continue_from = gradient, continue_from
    validate(config)


def test_the_driver_runs_the_exact_teacher_gradient(tmp_path):
  """Through `train` on a small dataset: the exact gradient with our continuation (the cycle
  tests above take the authors'), two exact gradients averaged per teacher step, both unrolls
  rematerialised; a finite summary."""
  rng = np.random.default_rng(0)

  def split(n):
    return Split(rng.normal(size=(n, F_IN)).astype(np.float32), rng.integers(0, C, n))

  dataset = Dataset("tiny", split(40), split(16), split(16), C)
  config = small_config(steps=20)
  config.student.hidden, config.train.batch_size, config.meta.val_batch_size = (8,), 8, 0
  config.meta.unroll_steps, config.meta.interval = 3, 5
  config.teacher.gradient, config.meta.continue_from = "reunroll", "unroll"
  config.meta.teacher_every, config.meta.remat = 2, "step"
  train(config, workdir=str(tmp_path), log=lambda _: None, dataset=dataset)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["meta_updates"] == 4 and summary["skipped_meta_updates"] == 0
  assert summary["teacher_updates"] == 2 and summary["skipped_teacher_updates"] == 0
  for key in ("test_accuracy", "test_loss", "val_loss", "final_train_ce"):
    assert math.isfinite(summary[key]), key
