"""The three-stage asynchronous schedule, as one pure `cycle` per method.

A cycle is `meta.interval` student steps. For L2T-DLN:
  1. student stage: every step is an optax update on the loss the student trains on
     (`StudentLoss`: the DLN, tabulated once per segment);
  2. DLN stage: the first K steps of the cycle are unrolled and differentiated, giving
     `g = d L_val / d phi`, and the teaching component (`l2t_jax.teaching.Teaching`) turns it into
     the next `phi`; the remaining `interval - K` steps train the student on the updated DLN
     without differentiation;
  3. teacher stage: inside the same `Teaching.update`, under its rule ("window": a first-order
     surrogate over M DLN updates; "reunroll": the segment re-run on the proposed DLN and
     differentiated exactly).
The student's real trajectory continues from the unrolled segment, or with "reunroll" optionally
from the re-run (`meta.continue_from`). L2T-DLF uses the same segment and hypergradient with its
MLP teacher; the fixed losses (CE, label smoothing, focal, GCE, SCE) run plain steps. A non-finite
hypergradient, teacher output or teacher gradient skips that update, and the skip is counted.

Training batches are gathered by index from the device-resident splits and, for images, augmented
inside the scans (`Segments.fetchers`). With `Segments.axis_name` set the cycle runs data-parallel
inside a `shard_map` (see `l2t_jax.parallel`): the averaging over devices happens in
`l2t_jax.unroll`, so the teachers see the same hypergradients on every device.
The config -> method factories are in `l2t_jax.build`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2t_jax import dlf
from l2t_jax import teacher as teacher_lib
from l2t_jax.data import augment as augment_lib
from l2t_jax.student_loss import StudentLoss
from l2t_jax.students import Student
from l2t_jax.teaching import CONTINUATIONS, Teaching, TeachingState, student_features
from l2t_jax.unroll import (
  LossFn,
  StatsFn,
  StepStats,
  StudentState,
  UnrollOptions,
  ValFn,
  all_finite,
  hypergradient,
  init_student_state,
  segment_objective,
  unroll,
)

# (example keys, inputs, labels) -> (inputs, labels): a batch's augmentation (labels change with
# the inputs for detection and segmentation: l2t_jax.data.dense_augment)
Augment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# The initial state's program is mostly random draws (one threefry hash per parameter), which XLA's
# CPU backend is slow to optimise: at LLVM optimisation level 1 it compiles 4-6 times faster (the
# tiny DeepLab's: 34 s -> 9 s on 2 cores) with bit-identical results (tests/test_loop.py checks).
# It runs once, so its speed does not matter.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
STUDENT_RNG_STREAM = 1  # folded into the seed for the students' own randomness (Dropout)
NUM_FEATURES = teacher_lib.NUM_STATE_FEATURES


class Counters(NamedTuple):
  meta_updates: jax.Array
  skipped_meta_updates: jax.Array
  teacher_updates: jax.Array
  skipped_teacher_updates: jax.Array


class TrainState(NamedTuple):
  step: jax.Array
  student: StudentState
  loss_params: Any  # DLN parameters phi (L2T-DLN); () otherwise
  teacher: Any  # L2T-DLN: the `TeachingState`; L2T-DLF: one with the MLP teacher; () otherwise
  features: jax.Array  # the latest student-state features (progress, train CE, val loss, val acc)
  counters: Counters


class CycleMetrics(NamedTuple):
  train_loss: jax.Array  # the loss the student descended, mean over the cycle's steps
  train_ce: jax.Array
  train_accuracy: jax.Array
  val_loss: jax.Array  # meta-objective on the cycle's validation batch (NaN for fixed losses)
  val_accuracy: jax.Array
  nonfinite_loss: jax.Array  # 1 when the student's loss or CE was NaN or inf at a step, else 0


class Method(NamedTuple):
  """`init` is jitted (its outputs never share buffers, so the state can be donated to `cycle`);
  `cycle` is pure, for the caller to jit."""

  name: str
  init: Callable[[jax.Array, jax.Array], TrainState]
  cycle: Callable[[TrainState, dict, jax.Array, jax.Array], tuple[TrainState, CycleMetrics]]


def jit_init(init: Callable) -> Callable:
  """`jax.jit(init)`, compiled with `INIT_COMPILER_OPTIONS` on CPU."""
  options = INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
  return jax.jit(init, compiler_options=options)


def gather(x: jax.Array, y: jax.Array, idx: jax.Array) -> dict:
  return {"x": x[idx], "y": y[idx]}


def _mean_stats(*stats: StepStats) -> StepStats:
  steps = sum(s.loss.shape[0] for s in stats)
  return jax.tree_util.tree_map(lambda *xs: sum(x.sum() for x in xs) / steps, *stats)


def uniform_guess_features(num_classes: int) -> jax.Array:
  """The student-state features before any measurement: those of a uniform guess."""
  log_c = jnp.log(num_classes)
  return jnp.array([0.0, log_c, log_c, 1.0 / num_classes], jnp.float32)


def _zero_counters() -> Counters:
  z = jnp.zeros((), jnp.int32)
  return Counters(z, z, z, z)


def _select(pred, a, b):
  return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


def _metrics(train: StepStats, val_loss, val_accuracy) -> CycleMetrics:
  # One non-finite step makes the cycle's mean non-finite: the student diverged (the driver stops).
  nonfinite = ~(jnp.isfinite(train.loss) & jnp.isfinite(train.ce))
  return CycleMetrics(
    train.loss, train.ce, train.accuracy, val_loss, val_accuracy, nonfinite.astype(jnp.float32)
  )


class Segments(NamedTuple):
  """Runs the student's segments for every method: the student, its optimizer, the schedule's
  constants, and how a step's batch is made (gathered, augmented) and keyed."""

  student: Student
  optimizer: optax.GradientTransformation
  val_fn: ValFn  # the validation objective, (logits, labels) -> scalar
  unroll_steps: int  # K
  total_steps: int
  initial_features: jax.Array
  remat: str = "none"  # memory policy of the differentiated unroll (unroll.REMAT_POLICIES)
  axis_name: str | None = None  # the device axis when the cycle runs data-parallel
  augment: Augment | None = None  # (example keys, x, y) -> (x, y)
  seed: int = 0  # keys the augmentation and the student's randomness, with the step
  stats: StatsFn | None = None  # a detection or segmentation task's step statistics (tasks.py)

  def base_state(self, rng, sample_x) -> TrainState:
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      student=init_student_state(self.student, self.optimizer, rng, sample_x),
      loss_params=(),
      teacher=(),
      features=self.initial_features,
      counters=_zero_counters(),
    )

  def indexed_steps(self, train_idx, first_step):
    """The scan's inputs for the cycle's steps: each step's index row and its step number (which,
    with the seed and the position in the global batch, keys the augmentation)."""
    return train_idx, first_step + jnp.arange(train_idx.shape[0])

  def split_indices(self, train_idx, first_step):
    """`indexed_steps` for the unrolled segment (the first K steps) and for the rest."""
    xs, k = self.indexed_steps(train_idx, first_step), self.unroll_steps
    return (
      jax.tree_util.tree_map(lambda a: a[:k], xs),
      jax.tree_util.tree_map(lambda a: a[k:], xs),
    )

  def fetchers(self, data):
    """Batch makers for use inside the scans: a training batch from an index row, augmented when
    `augment` is set."""

    def fetch(xs):
      idx, step = xs
      batch = gather(data["train_x"], data["train_y"], idx)
      if self.augment is None:
        return batch
      offset = jax.lax.axis_index(self.axis_name) * idx.shape[0] if self.axis_name else 0
      keys = augment_lib.example_keys(self.seed, step, offset + jnp.arange(idx.shape[0]))
      x, y = self.augment(keys, batch["x"], batch["y"])
      return {"x": x, "y": y}

    return fetch

  def options(self, data, remat: str = "none") -> UnrollOptions:
    return UnrollOptions(
      remat=remat, fetch=self.fetchers(data), axis_name=self.axis_name, stats=self.stats
    )

  def rng(self, indexed) -> jax.Array:
    """The key of a segment's student randomness, from its first step number (an empty segment,
    when the interval equals K, gets one too: its scan is traced all the same)."""
    base = jax.random.fold_in(jax.random.PRNGKey(self.seed), STUDENT_RNG_STREAM)
    steps = indexed[1]
    return jax.random.fold_in(base, steps[0] if steps.shape[0] else 0)

  def hypergradient(
    self, loss_fn, loss_params, student_state, data, seg_idx, val_batch, prepare=None
  ):
    return hypergradient(
      self.student,
      self.optimizer,
      loss_fn,
      self.val_fn,
      loss_params,
      student_state,
      seg_idx,
      val_batch,
      prepare=prepare,
      options=self.options(data, self.remat),
      rng=self.rng(seg_idx),
    )

  def objective(self, loss_fn, student_state, data, seg_idx, val_batch, prepare=None):
    """`unroll.segment_objective` of the segment `seg_idx` (what "reunroll" re-runs)."""
    return segment_objective(
      self.student,
      self.optimizer,
      loss_fn,
      self.val_fn,
      student_state,
      seg_idx,
      val_batch,
      prepare=prepare,
      options=self.options(data, self.remat),
      rng=self.rng(seg_idx),
    )

  def unroll(self, loss_fn, loss_params, student_state, data, idx):
    return unroll(
      self.student,
      self.optimizer,
      loss_fn,
      loss_params,
      student_state,
      idx,
      options=self.options(data),
      rng=self.rng(idx),
    )

  def val_batch(self, data, val_idx):
    return gather(data["val_x"], data["val_y"], val_idx)

  def progress(self, step):
    return (step + self.unroll_steps) / self.total_steps


def fixed_loss_method(name: str, segments: Segments, loss_fn: LossFn) -> Method:
  """A hand-made loss: every step of the cycle is a plain student step."""

  def cycle(state, data, train_idx, val_idx):
    del val_idx
    student_state, stats = segments.unroll(
      loss_fn, (), state.student, data, segments.indexed_steps(train_idx, state.step)
    )
    nan = jnp.full((), jnp.nan, jnp.float32)
    metrics = _metrics(_mean_stats(stats), nan, nan)
    return state._replace(step=state.step + train_idx.shape[0], student=student_state), metrics

  return Method(name, jit_init(segments.base_state), cycle)


def dlf_method(
  segments: Segments,
  teacher: dlf.DLFTeacher,
  teacher_opt: optax.GradientTransformation,
  teacher_every: int,
) -> Method:
  """L2T-DLF: the MLP teacher's loss parameters, trained by the segment's hypergradient, one
  teacher step per `teacher_every` hypergradients."""
  teacher_opt = optax.MultiSteps(teacher_opt, every_k_schedule=teacher_every)

  def init(rng, sample_x):
    rng_s, rng_t = jax.random.split(rng)
    omega = teacher.init(rng_t)
    return segments.base_state(rng_s, sample_x)._replace(
      teacher=TeachingState(omega, (), teacher_opt.init(omega), ())
    )

  def cycle(state, data, train_idx, val_idx):
    seg_idx, plain_idx = segments.split_indices(train_idx, state.step)
    omega = state.teacher.teacher_params
    loss_params, vjp = jax.vjp(lambda om: teacher.loss_params(om, state.features), omega)
    hg = segments.hypergradient(
      dlf.dlf_loss, loss_params, state.student, data, seg_idx, segments.val_batch(data, val_idx)
    )
    (g_omega,) = vjp(hg.grads)
    ok = all_finite(g_omega) & jnp.isfinite(hg.val.loss)
    g_omega = _select(ok, g_omega, jax.tree_util.tree_map(jnp.zeros_like, g_omega))
    updates, opt_state = teacher_opt.update(g_omega, state.teacher.opt_state, omega)
    omega = optax.apply_updates(omega, updates)
    features = student_features(segments.progress(state.step), hg)
    student_state, plain_stats = segments.unroll(
      dlf.dlf_loss, teacher.loss_params(omega, features), hg.student, data, plain_idx
    )
    c = state.counters
    counters = c._replace(
      meta_updates=c.meta_updates + ok,
      skipped_meta_updates=c.skipped_meta_updates + ~ok,
      teacher_updates=opt_state.gradient_step.astype(jnp.int32),
    )
    new_state = state._replace(
      step=state.step + train_idx.shape[0],
      student=student_state,
      teacher=TeachingState(omega, (), opt_state, ()),
      features=features,
      counters=counters,
    )
    return new_state, _metrics(_mean_stats(hg.train, plain_stats), hg.val.loss, hg.val.accuracy)

  return Method("l2t_dlf", jit_init(init), cycle)


def dln_method(
  segments: Segments,
  loss: StudentLoss,
  teaching: Teaching,
  teacher_params: Any = None,
  continue_from: str = "unroll",
) -> Method:
  """L2T-DLN: the student trains on `loss` (any object with `init(rng)`, `tabulate(phi)` and
  `loss(tabulated, logits, labels)`, as `StudentLoss`), whose parameters `teaching` updates from
  every segment's hypergradient. `teacher_params` (default: a random teacher) starts the teacher
  from trained parameters, e.g. `teacher_io.load_teacher`'s. `continue_from`
  (`meta.continue_from`: "unroll", or with the "reunroll" teacher gradient "reunroll") picks the
  segment the student's trajectory continues from."""
  if continue_from not in CONTINUATIONS:
    raise ValueError(f"continue_from='{continue_from}' is not one of {CONTINUATIONS}")
  if continue_from == "reunroll" and teaching.gradient != "reunroll":
    raise ValueError(
      "continue_from='reunroll' needs gradient='reunroll' (the window gradient "
      "runs no second unroll)"
    )

  def assemble(rng, sample_x, phi, theta):
    rng_s, _, rng_t = jax.random.split(rng, 3)
    phi = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), phi)
    return segments.base_state(rng_s, sample_x)._replace(
      loss_params=phi, teacher=teaching.init(rng_t, phi, theta)
    )

  # The DLN and the random teacher are drawn by programs of their own: they are the slowest parts
  # of the initial state to compile (a flax LSTM's initialisers above all) and do not depend on
  # the student, so a persistent compilation cache serves them to every run after the first (the
  # suite's runs, the tests). The state is the same, bit for bit.
  draw_dln = jit_init(lambda rng: loss.init(jax.random.split(rng, 3)[1]))
  draw_teacher = jit_init(lambda rng: teaching.teacher.init(jax.random.split(rng, 3)[2]))
  assemble = jit_init(assemble)

  def init(rng, sample_x):
    theta = draw_teacher(rng) if teacher_params is None else teacher_params
    return assemble(rng, sample_x, draw_dln(rng), theta)

  def cycle(state, data, train_idx, val_idx):
    seg_idx, plain_idx = segments.split_indices(train_idx, state.step)
    val_batch = segments.val_batch(data, val_idx)
    hg = segments.hypergradient(
      loss.loss, state.loss_params, state.student, data, seg_idx, val_batch, loss.tabulate
    )
    features = student_features(segments.progress(state.step), hg)
    outcome = None
    if teaching.gradient == "reunroll":  # the same segment, re-run on the proposed DLN
      outcome = segments.objective(
        loss.loss, state.student, data, seg_idx, val_batch, loss.tabulate
      )
    grads = _select(
      jnp.isfinite(hg.val.loss),
      hg.grads,
      jax.tree_util.tree_map(lambda g: jnp.full_like(g, jnp.nan), hg.grads),
    )
    phi, teacher_state, info = teaching.update(
      grads, state.teacher, state.loss_params, features, outcome
    )
    student, seg_train, val = hg.student, hg.train, hg.val
    if continue_from == "reunroll":  # the student trained on the kept proposal
      val_acc, second_student, second_train = info.outcome_aux
      if segments.axis_name:
        val_acc = jax.lax.pmean(val_acc, segments.axis_name)
      second_val = val._replace(loss=info.outcome_loss, accuracy=val_acc)
      student, seg_train, val = _select(
        info.applied, (second_student, second_train, second_val), (student, seg_train, val)
      )
    c = state.counters
    counters = Counters(
      meta_updates=c.meta_updates + info.applied,
      skipped_meta_updates=c.skipped_meta_updates + ~info.applied,
      teacher_updates=c.teacher_updates + info.teacher_updated,
      skipped_teacher_updates=c.skipped_teacher_updates + info.teacher_skipped,
    )
    # Stage 1 goes on: the rest of the cycle trains the student on the updated DLN.
    student_state, plain_stats = segments.unroll(
      loss.loss, loss.tabulate(phi), student, data, plain_idx
    )
    new_state = state._replace(
      step=state.step + train_idx.shape[0],
      student=student_state,
      loss_params=phi,
      teacher=teacher_state,
      features=features,
      counters=counters,
    )
    return new_state, _metrics(_mean_stats(seg_train, plain_stats), val.loss, val.accuracy)

  return Method("l2t_dln", init, cycle)
