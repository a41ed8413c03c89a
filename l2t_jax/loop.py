"""The three-stage asynchronous schedule, as one pure `cycle` per method.

A cycle is `meta.interval` student steps. For L2T-DLN:
  1. student stage: every step is an optax update on the DLN loss;
  2. DLN stage: the first K steps of the cycle are unrolled and differentiated, giving
     `g = d L_val / d phi`; the teacher turns `pre(g)` into `delta_phi` and `phi <- phi + delta_phi`;
     the remaining `interval - K` steps train the student on the updated DLN without differentiation;
  3. teacher stage (`teacher.gradient`): "window", every M DLN updates `theta` takes an Adam
     step on the gradient of `LSTMTeacher.surrogate_loss` over those M steps (truncated BPTT
     through the DLN and the LSTM memory, with the student's trajectory held fixed); or
     "reunroll" (the authors'), the K steps are re-run from the same start on the proposed DLN
     and their validation loss differentiated w.r.t. `theta`, exactly (second order through the
     student); `theta` steps on the mean of M such gradients.
The student's real trajectory continues from the unrolled state, or with "reunroll" optionally
from the re-run (`meta.continue_from`). L2T-DLF uses the same segment and hypergradient with its
MLP teacher; the fixed losses (CE, label smoothing, focal) run plain steps. A non-finite
hypergradient, teacher output or teacher gradient skips that update, and the skip is counted.

Training batches are gathered by index from the device-resident splits and, for images, augmented
inside the scans (`Setup.fetchers`). With `Setup.axis_name` set the cycle runs data-parallel inside
a `shard_map` (see `l2t_jax.parallel`): the averaging over devices happens in `l2t_jax.unroll`, so
the teachers see the same hypergradients on every device.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.flatten_util import ravel_pytree

from l2t_jax import config as config_lib
from l2t_jax import dlf, dln as dln_lib, dln_table, losses, optim, teacher_io
from l2t_jax import teacher as teacher_lib
from l2t_jax.data import augment as augment_lib
from l2t_jax.students import Student
from l2t_jax.tasks import Task, dln_loss_fn
from l2t_jax.unroll import (LossFn, StatsFn, StepStats, StudentState, ValFn, all_finite,
                            hypergradient, init_student_state, unroll)

NUM_FEATURES = teacher_lib.NUM_STATE_FEATURES


class Window(NamedTuple):
  """The teacher steps since the last teacher update, kept to replay them for its gradient."""
  memory0: Any  # LSTM memory before the window's first step
  in_grads: jax.Array  # (M, D) gradients the teacher took as input
  in_features: jax.Array  # (M, F) student-state features it took
  out_grads: jax.Array  # (M, D) validation gradients measured after each step
  n: jax.Array  # steps whose outcome gradient is recorded
  pending: jax.Array  # the last step still waits for its outcome gradient


class Counters(NamedTuple):
  meta_updates: jax.Array
  skipped_meta_updates: jax.Array
  teacher_updates: jax.Array
  skipped_teacher_updates: jax.Array


class TrainState(NamedTuple):
  step: jax.Array
  student: StudentState
  loss_params: Any  # DLN parameters phi (L2T-DLN); () otherwise
  teacher_params: Any  # LSTM teacher theta (L2T-DLN) or DLF teacher omega; () otherwise
  teacher_opt_state: Any
  memory: Any  # the LSTM teacher's memory, one state per DLN coordinate
  window: Any
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


def gather(x: jax.Array, y: jax.Array, idx: jax.Array) -> dict:
  return {"x": x[idx], "y": y[idx]}


def _mean_stats(*stats: StepStats) -> StepStats:
  steps = sum(s.loss.shape[0] for s in stats)
  return jax.tree_util.tree_map(lambda *xs: sum(x.sum() for x in xs) / steps, *stats)


def _features(progress, train: StepStats, val) -> jax.Array:
  return jnp.stack([progress, train.ce.mean(), val.loss, val.accuracy]).astype(jnp.float32)


def _uniform_guess_features(num_classes: int) -> jax.Array:
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
  return CycleMetrics(train.loss, train.ce, train.accuracy, val_loss, val_accuracy,
                      nonfinite.astype(jnp.float32))


def fixed_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
  """`loss_fn(loss_params, logits, labels)` for the hand-made losses (loss_params unused)."""
  if config.method == "ce":
    return lambda _, logits, y: losses.cross_entropy(logits, y)
  if config.method == "label_smoothing":
    return lambda _, logits, y: losses.label_smoothing(logits, y, config.loss.label_smoothing)
  if config.method == "focal":
    return lambda _, logits, y: losses.focal(logits, y, config.loss.focal_gamma)
  raise ValueError(f"method='{config.method}' has no fixed loss")


class Setup(NamedTuple):
  """What every method shares: the student, its optimizer and the schedule's constants."""
  student: Student
  optimizer: optax.GradientTransformation
  val_fn: ValFn  # the validation objective, (logits, labels) -> scalar
  unroll_steps: int  # K
  teacher_every: int  # M
  total_steps: int
  initial_features: jax.Array
  remat: str = "none"  # memory policy of the differentiated unroll (unroll.REMAT_POLICIES)
  axis_name: str | None = None  # the device axis when the cycle runs data-parallel
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None  # (example keys, x) -> x
  seed: int = 0  # keys the augmentation, with the step and the position in the global batch
  stats: StatsFn | None = None  # a detection or segmentation task's step statistics (tasks.py)

  def base_state(self, rng, sample_x) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        student=init_student_state(self.student, self.optimizer, rng, sample_x),
        loss_params=(), teacher_params=(), teacher_opt_state=(), memory=(), window=(),
        features=self.initial_features, counters=_zero_counters())

  def indexed_steps(self, train_idx, first_step):
    """The scan's inputs for the cycle's steps: each step's index row and its step number (which,
    with the seed and the position in the global batch, keys the augmentation)."""
    return train_idx, first_step + jnp.arange(train_idx.shape[0])

  def split_indices(self, train_idx, first_step):
    """`indexed_steps` for the unrolled segment (the first K steps) and for the rest."""
    xs, k = self.indexed_steps(train_idx, first_step), self.unroll_steps
    return (jax.tree_util.tree_map(lambda a: a[:k], xs),
            jax.tree_util.tree_map(lambda a: a[k:], xs))

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
      return {"x": self.augment(keys, batch["x"]), "y": batch["y"]}

    return fetch

  def hypergradient(self, loss_fn, loss_params, student_state, data, seg_idx, val_batch,
                    prepare=None):
    return hypergradient(self.student, self.optimizer, loss_fn, self.val_fn, loss_params,
                         student_state, seg_idx, val_batch, self.remat, self.fetchers(data),
                         prepare, self.axis_name, self.stats)

  def unroll(self, loss_fn, loss_params, student_state, data, idx):
    return unroll(self.student, self.optimizer, loss_fn, loss_params, student_state, idx,
                  fetch=self.fetchers(data), axis_name=self.axis_name, stats=self.stats)

  def val_batch(self, data, val_idx):
    return gather(data["val_x"], data["val_y"], val_idx)

  def progress(self, step):
    return (step + self.unroll_steps) / self.total_steps


def fixed_loss_method(name: str, setup: Setup, loss_fn: LossFn) -> Method:
  """A hand-made loss: every step of the cycle is a plain student step."""

  def cycle(state, data, train_idx, val_idx):
    del val_idx
    student_state, stats = setup.unroll(loss_fn, (), state.student, data,
                                        setup.indexed_steps(train_idx, state.step))
    nan = jnp.full((), jnp.nan, jnp.float32)
    metrics = _metrics(_mean_stats(stats), nan, nan)
    return state._replace(step=state.step + train_idx.shape[0], student=student_state), metrics

  return Method(name, jax.jit(setup.base_state), cycle)


def dlf_method(setup: Setup, teacher: dlf.DLFTeacher,
               teacher_opt: optax.GradientTransformation) -> Method:
  """L2T-DLF: the MLP teacher's loss parameters, trained by the segment's hypergradient."""
  teacher_opt = optax.MultiSteps(teacher_opt, every_k_schedule=setup.teacher_every)

  def init(rng, sample_x):
    rng_s, rng_t = jax.random.split(rng)
    omega = teacher.init(rng_t)
    return setup.base_state(rng_s, sample_x)._replace(
        teacher_params=omega, teacher_opt_state=teacher_opt.init(omega))

  def cycle(state, data, train_idx, val_idx):
    seg_idx, plain_idx = setup.split_indices(train_idx, state.step)
    omega = state.teacher_params
    loss_params, vjp = jax.vjp(lambda om: teacher.loss_params(om, state.features), omega)
    hg = setup.hypergradient(dlf.dlf_loss, loss_params, state.student, data, seg_idx,
                             setup.val_batch(data, val_idx))
    (g_omega,) = vjp(hg.grads)
    ok = all_finite(g_omega) & jnp.isfinite(hg.val.loss)
    g_omega = _select(ok, g_omega, jax.tree_util.tree_map(jnp.zeros_like, g_omega))
    updates, opt_state = teacher_opt.update(g_omega, state.teacher_opt_state, omega)
    omega = optax.apply_updates(omega, updates)
    features = _features(setup.progress(state.step), hg.train, hg.val)
    student_state, plain_stats = setup.unroll(
        dlf.dlf_loss, teacher.loss_params(omega, features), hg.student, data, plain_idx)
    c = state.counters
    counters = c._replace(meta_updates=c.meta_updates + ok,
                          skipped_meta_updates=c.skipped_meta_updates + ~ok,
                          teacher_updates=opt_state.gradient_step.astype(jnp.int32))
    new_state = state._replace(step=state.step + train_idx.shape[0], student=student_state,
                               teacher_params=omega, teacher_opt_state=opt_state,
                               features=features, counters=counters)
    return new_state, _metrics(_mean_stats(hg.train, plain_stats), hg.val.loss, hg.val.accuracy)

  return Method("l2t_dlf", jax.jit(init), cycle)


def dln_method(setup: Setup, loss_init: Callable[[jax.Array], Any], loss_fn: LossFn,
               teacher: teacher_lib.LSTMTeacher, teacher_opt: optax.GradientTransformation,
               prepare: Callable[[Any], Any] | None = None,
               teacher_params: Any = None, gradient: str = "window",
               continue_from: str = "unroll") -> Method:
  """L2T-DLN with any learned loss `loss_fn(prepare(phi), logits, labels)` whose `phi` starts at
  `loss_init(rng)`; the DLN of `l2t_jax.dln` is the standard choice. `prepare` (default: none)
  runs once per segment, e.g. to tabulate the DLN. `teacher_params` (default: a random teacher)
  starts the teacher from trained parameters, e.g. `teacher_io.load_teacher`'s.

  `gradient` is the teacher's (`teacher.gradient`): "window", the first-order surrogate over M DLN
  updates; or "reunroll", the exact one-step gradient of the validation loss after the segment
  re-run on the proposed DLN (`reunroll_cycle`). `continue_from` (`meta.continue_from`, "unroll"
  or, with "reunroll", "reunroll") picks the segment the student's trajectory continues from."""
  if gradient not in config_lib.TEACHER_GRADIENTS or continue_from not in config_lib.CONTINUATIONS:
    raise ValueError(f"gradient='{gradient}' must be one of {config_lib.TEACHER_GRADIENTS} and "
                     f"continue_from='{continue_from}' one of {config_lib.CONTINUATIONS}")
  if gradient == "window" and continue_from != "unroll":
    raise ValueError("continue_from='reunroll' needs gradient='reunroll' (the window gradient "
                     "runs no second unroll)")
  M = setup.teacher_every
  prepare = prepare or (lambda phi: phi)
  use_features = teacher.num_features > 0
  accumulate = gradient == "reunroll" and M > 1
  if accumulate:  # the mean of M exact one-step gradients makes one teacher step
    teacher_opt = optax.MultiSteps(teacher_opt, every_k_schedule=M)

  def init(rng, sample_x):
    rng_s, rng_d, rng_t = jax.random.split(rng, 3)
    phi = loss_init(rng_d)
    theta = teacher.init(rng_t)
    if teacher_params is not None:  # copied, so that init's outputs never share buffers
      theta = jax.tree_util.tree_map(lambda t, x: jnp.array(x, t.dtype, copy=True), theta,
                                     teacher_params)
    memory = teacher.init_state(phi)
    window = ()
    if gradient == "window":
      flat = ravel_pytree(phi)[0]
      window = Window(memory0=memory, in_grads=jnp.zeros((M, flat.size), flat.dtype),
                      in_features=jnp.zeros((M, NUM_FEATURES), jnp.float32),
                      out_grads=jnp.zeros((M, flat.size), flat.dtype),
                      n=jnp.zeros((), jnp.int32), pending=jnp.zeros((), bool))
    return setup.base_state(rng_s, sample_x)._replace(
        loss_params=phi, teacher_params=theta, teacher_opt_state=teacher_opt.init(theta),
        memory=memory, window=window)

  def propose(theta, memory, g_flat, features):
    return teacher.step_flat(theta, memory, g_flat, features if use_features else None)

  def segment(state, data, train_idx, val_idx):
    """Stage 2a, shared: the hypergradient through the K unrolled student steps."""
    seg_idx, plain_idx = setup.split_indices(train_idx, state.step)
    val_batch = setup.val_batch(data, val_idx)
    hg = setup.hypergradient(loss_fn, state.loss_params, state.student, data, seg_idx, val_batch,
                             prepare)
    g_flat = ravel_pytree(hg.grads)[0]
    ok_g = jnp.all(jnp.isfinite(g_flat)) & jnp.isfinite(hg.val.loss)
    features = _features(setup.progress(state.step), hg.train, hg.val)
    return seg_idx, plain_idx, val_batch, hg, g_flat, ok_g, features

  def finish(state, data, train_idx, plain_idx, phi, student, seg_train, val, counters, **rest):
    """Stage 1 goes on: the rest of the cycle trains the student on the updated DLN."""
    student_state, plain_stats = setup.unroll(loss_fn, prepare(phi), student, data, plain_idx)
    new_state = state._replace(step=state.step + train_idx.shape[0], student=student_state,
                               loss_params=phi, counters=counters, **rest)
    return new_state, _metrics(_mean_stats(seg_train, plain_stats), val.loss, val.accuracy)

  def window_cycle(state, data, train_idx, val_idx):
    _, plain_idx, _, hg, g_flat, ok_g, features = segment(state, data, train_idx, val_idx)

    # Stage 3: g is the outcome of the previous teacher step; a full window updates the teacher.
    w = state.window
    record = w.pending & ok_g
    out_grads = jnp.where(record, w.out_grads.at[w.n].set(g_flat), w.out_grads)
    n = w.n + record.astype(jnp.int32)
    full = n == M

    def teacher_update(carry):
      theta, opt_state = carry
      grads = jax.grad(teacher.surrogate_loss)(theta, w.memory0, w.in_grads, w.in_features,
                                               out_grads)
      updates, opt_state = teacher_opt.update(grads, opt_state, theta)
      return optax.apply_updates(theta, updates), opt_state, all_finite(grads)

    theta, teacher_opt_state, ok_teacher = jax.lax.cond(
        full, teacher_update, lambda carry: (*carry, jnp.array(True)),
        (state.teacher_params, state.teacher_opt_state))
    n = jnp.where(full | ~ok_g, 0, n)

    # Stage 2b: the teacher's step updates the DLN.
    step = propose(theta, state.memory, g_flat, features)
    apply = ok_g & jnp.all(jnp.isfinite(step.updates))
    phi_flat, unravel = ravel_pytree(state.loss_params)
    phi = unravel(jnp.where(apply, phi_flat + step.updates, phi_flat))
    window = Window(
        memory0=_select(n == 0, state.memory, w.memory0),
        in_grads=jnp.where(apply, w.in_grads.at[n].set(g_flat), w.in_grads),
        in_features=jnp.where(apply, w.in_features.at[n].set(features), w.in_features),
        out_grads=out_grads,
        n=jnp.where(apply, n, 0),  # a skipped step ends the window without a teacher update
        pending=apply)
    c = state.counters
    counters = Counters(
        meta_updates=c.meta_updates + apply,
        skipped_meta_updates=c.skipped_meta_updates + ~apply,
        teacher_updates=c.teacher_updates + (full & ok_teacher),
        skipped_teacher_updates=c.skipped_teacher_updates + (full & ~ok_teacher))
    return finish(state, data, train_idx, plain_idx, phi, hg.student, hg.train, hg.val, counters,
                  teacher_params=theta, teacher_opt_state=teacher_opt_state,
                  memory=_select(apply, step.memory, state.memory), window=window,
                  features=features)

  def reunroll_cycle(state, data, train_idx, val_idx):
    """One meta-iteration of the authors' protocol: the teacher proposes `phi'` from `g`, the
    same K batches are unrolled again from the same start on `phi'`, and the validation loss of
    that second unroll (on the same validation batch) is differentiated w.r.t. theta through
    `phi'` and every step of the second unroll. The DLN keeps `phi'`; the LSTM memory moves on,
    cut from the gradient."""
    seg_idx, plain_idx, val_batch, hg, g_flat, ok_g, features = segment(state, data, train_idx,
                                                                        val_idx)
    theta, memory = state.teacher_params, state.memory
    phi_flat, unravel = ravel_pytree(state.loss_params)

    def proposed_loss(th):  # prepare(phi'(theta)), with g, the features and the memory held fixed
      return prepare(unravel(phi_flat + propose(th, memory, g_flat, features).updates))

    step = propose(theta, memory, g_flat, features)
    second = setup.hypergradient(loss_fn, theta, state.student, data, seg_idx, val_batch,
                                 proposed_loss)
    # A proposal is kept when it is finite and the student trained on it stays finite.
    apply = ok_g & jnp.all(jnp.isfinite(step.updates)) & jnp.isfinite(second.val.loss)
    learn = apply & all_finite(second.grads)
    updates, opt_state = teacher_opt.update(second.grads, state.teacher_opt_state, theta)
    theta_next, opt_state = _select(learn, (optax.apply_updates(theta, updates), opt_state),
                                    (theta, state.teacher_opt_state))
    phi = unravel(jnp.where(apply, phi_flat + step.updates, phi_flat))
    student, seg_train, val = hg.student, hg.train, hg.val
    if continue_from == "reunroll":  # the student trained on the kept proposal
      student, seg_train, val = _select(apply, (second.student, second.train, second.val),
                                        (student, seg_train, val))
    c = state.counters
    counters = Counters(
        meta_updates=c.meta_updates + apply,
        skipped_meta_updates=c.skipped_meta_updates + ~apply,
        teacher_updates=c.teacher_updates + (learn & teacher_opt.has_updated(opt_state)
                                             if accumulate else learn),
        skipped_teacher_updates=c.skipped_teacher_updates + (apply & ~learn))
    return finish(state, data, train_idx, plain_idx, phi, student, seg_train, val, counters,
                  teacher_params=theta_next, teacher_opt_state=opt_state,
                  memory=_select(apply, step.memory, memory), features=features)

  return Method("l2t_dln", jax.jit(init),
                reunroll_cycle if gradient == "reunroll" else window_cycle)


def make_teacher(cfg: ml_collections.ConfigDict) -> teacher_lib.LSTMTeacher:
  return teacher_lib.LSTMTeacher(
      hidden=cfg.hidden, layers=cfg.layers, output_scale=cfg.output_scale,
      preprocess_p=cfg.preprocess_p, num_features=NUM_FEATURES if cfg.state_features else 0,
      network=cfg.network)


def make_setup(config: ml_collections.ConfigDict, student: Student,
               optimizer: optax.GradientTransformation, num_classes: int,
               axis_name: str | None = None, task: Task | None = None) -> Setup:
  augment = None
  if config.data.augment:
    augment = functools.partial(augment_lib.crop_and_flip_batch, padding=config.data.crop_padding)
  val_fn = losses.validation_objective(config.meta.val_objective, config.meta.smooth_error_k,
                                       config.meta.scale_free_temperature, axis_name)
  return Setup(
      student=student, optimizer=optimizer,
      val_fn=task.standard_loss if task else val_fn, stats=task.stats if task else None,
      unroll_steps=config.meta.unroll_steps, teacher_every=config.meta.teacher_every,
      total_steps=config.train.steps, initial_features=_uniform_guess_features(num_classes),
      remat=config.meta.remat, axis_name=axis_name, augment=augment, seed=config.seed)


def build_method(config: ml_collections.ConfigDict, student: Student,
                 optimizer: optax.GradientTransformation, num_classes: int,
                 axis_name: str | None = None, task: Task | None = None) -> Method:
  """The init and cycle functions of `config.method` (pure; jit them, or with `axis_name` run the
  cycle data-parallel through `l2t_jax.parallel`). `task` (tasks.make_task): a detection or
  segmentation student's loss and statistics; None for classification."""
  setup = make_setup(config, student, optimizer, num_classes, axis_name, task)
  if config.method == "l2t_dln":
    dln = dln_lib.make_dln(config.dln)
    teacher_opt = optim.teacher_optimizer(config.teacher.learning_rate, config.teacher.grad_clip)
    theta = teacher_io.load_teacher(config.teacher_init, config.teacher) if config.teacher_init \
        else None
    loss_fn, prepare = dln.loss, None
    if task:
      loss_fn = dln_loss_fn(task, dln, tabulated=bool(config.dln.table_size))
    elif config.dln.table_size:
      loss_fn = dln_table.table_loss
    if config.dln.table_size:
      prepare = lambda phi: dln_table.make_table(dln, phi, config.dln.table_size,
                                                    config.dln.slope_bound,
                                                    config.dln.slope_floor)  # noqa: E731
    return dln_method(setup, dln.init, loss_fn, make_teacher(config.teacher), teacher_opt, prepare,
                      teacher_params=theta, gradient=config.teacher.gradient,
                      continue_from=config.meta.continue_from)
  if config.method == "l2t_dlf":
    teacher = dlf.DLFTeacher(dlf.DLFNetwork(tuple(config.dlf.hidden), num_classes), NUM_FEATURES)
    return dlf_method(setup, teacher,
                      optim.teacher_optimizer(config.dlf.learning_rate, config.dlf.grad_clip))
  if task:  # the task's standard loss (config.validate allows only ce besides l2t_dln)
    return fixed_loss_method(config.method, setup, lambda _, out, y: task.standard_loss(out, y))
  return fixed_loss_method(config.method, setup, fixed_loss_fn(config))
