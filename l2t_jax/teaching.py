"""Teaching a learned loss: the LSTM teacher and its own learning as one optax-style component.

A `Teaching` turns each validation hypergradient `g = d L_val / d phi` into the next loss
parameters `phi + teacher(g)` and, inside the same pure `update`, learns the teacher `theta`
under one of two rules (`teacher.gradient`):

- "window" (ours): every teacher step is recorded; the hypergradient measured at the next update is
  that step's outcome. After M recorded outcomes the teacher takes an optimizer step on the
  gradient of `LSTMTeacher.surrogate_loss` over the window (first order: truncated BPTT through
  the DLN and the LSTM memory, the student's trajectory held fixed).
- "reunroll" (the authors'): every update re-runs the caller's segment on the proposed DLN
  (`outcome`, a function of the proposed loss parameters returning the validation loss and any
  auxiliary output) and differentiates that loss w.r.t. `theta` exactly, second order through the
  student; the teacher steps on the mean of M such gradients.

    teaching = Teaching(LSTMTeacher(hidden=20, layers=2, output_scale=1e-2, preprocess_p=10.),
                        optax.adam(3e-3), teacher_every=5)
    state = teaching.init(rng, phi)
    # once per segment, with hg = hypergradient(..., phi, ...):
    phi, state, info = teaching.update(hg.grads, state, phi)
    # (a teacher built with num_features=4 also takes student_features(progress, hg))

A non-finite hypergradient or proposal leaves the loss parameters where they were; a non-finite
teacher gradient leaves the teacher where it was; `TeachingInfo` says which happened.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from l2t_jax.teacher import LSTMTeacher, TeacherStep
from l2t_jax.unroll import Hypergradient, all_finite

TEACHER_GRADIENTS = ("window", "reunroll")  # the teacher's learning rule (module docstring)
# With "reunroll", the student's trajectory may continue from the re-run instead of the first unroll.
CONTINUATIONS = ("unroll", "reunroll")

# `outcome(proposed_loss_params) -> (validation loss, aux)`, differentiable in its argument.
Outcome = Callable[[Any], tuple[jax.Array, Any]]


class Window(NamedTuple):
  """The teacher steps since the last teacher update, kept to replay them for its gradient."""

  memory0: Any  # LSTM memory before the window's first step
  in_grads: jax.Array  # (M, D) hypergradients the teacher took as input
  in_features: jax.Array  # (M, F) student-state features it took (F = 0 without features)
  out_grads: jax.Array  # (M, D) hypergradients measured after each step
  n: jax.Array  # steps whose outcome is recorded
  pending: jax.Array  # the last step still waits for its outcome


class TeachingState(NamedTuple):
  teacher_params: Any  # theta
  memory: Any  # the LSTM memory, one state per coordinate of the loss parameters
  opt_state: Any  # the teacher optimizer's
  window: Any  # "window": the `Window`; "reunroll": ()


class TeachingInfo(NamedTuple):
  """What one `update` did (booleans), and with "reunroll" the re-run's results."""

  applied: jax.Array  # the loss parameters moved
  teacher_updated: jax.Array  # the teacher took an optimizer step
  teacher_skipped: jax.Array  # a teacher gradient was non-finite and dropped
  outcome_loss: jax.Array  # "reunroll": the validation loss of the re-run on the proposal
  outcome_aux: Any  # "reunroll": the outcome's auxiliary output; () otherwise


def student_features(progress: jax.Array | float, hg: Hypergradient) -> jax.Array:
  """The student-state features a teacher may take (`teacher.NUM_STATE_FEATURES`): the training
  progress in [0, 1], and from the segment `hg`, its mean training cross-entropy and the
  validation loss and accuracy after it."""
  return jnp.stack(
    [jnp.asarray(progress, jnp.float32), hg.train.ce.mean(), hg.val.loss, hg.val.accuracy]
  ).astype(jnp.float32)


def _select(pred, a, b):
  return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


@dataclasses.dataclass(frozen=True)
class Teaching:
  """`init` and `update`, pure, for any loop to jit. `axis_name`: the device axis of a
  data-parallel run, over which the "reunroll" teacher gradient is averaged (the caller's
  hypergradients are expected averaged already, as `unroll.hypergradient` returns them)."""

  teacher: LSTMTeacher
  optimizer: optax.GradientTransformation
  teacher_every: int = 1  # M: outcomes per teacher step
  gradient: str = "window"  # TEACHER_GRADIENTS
  axis_name: str | None = None

  def __post_init__(self):
    if self.gradient not in TEACHER_GRADIENTS:
      raise ValueError(f"teacher.gradient='{self.gradient}' is not one of {TEACHER_GRADIENTS}")
    if self.teacher_every < 1:
      raise ValueError(f"teacher_every={self.teacher_every} must be at least 1")

  @property
  def _accumulates(self) -> bool:
    return self.gradient == "reunroll" and self.teacher_every > 1

  @property
  def _optimizer(self) -> optax.GradientTransformation:
    if self._accumulates:  # the mean of M exact one-step gradients makes one teacher step
      return optax.MultiSteps(self.optimizer, every_k_schedule=self.teacher_every)
    return self.optimizer

  def init(self, rng: jax.Array, loss_params: Any, teacher_params: Any = None) -> TeachingState:
    """A random teacher, or `teacher_params` (copied, so that the state shares no buffers with
    the caller's), with zero memory for every coordinate of `loss_params`."""
    if teacher_params is None:
      theta = self.teacher.init(rng)
    else:  # (the random draw is skipped: a flax LSTM's initialisers are slow to compile)
      theta = jax.tree_util.tree_map(
        lambda t, x: jnp.array(x, t.dtype, copy=True),
        jax.eval_shape(self.teacher.init, rng),
        teacher_params,
      )
    memory = self.teacher.init_state(loss_params)
    window = ()
    if self.gradient == "window":
      flat = ravel_pytree(loss_params)[0]
      M = self.teacher_every
      window = Window(
        memory0=memory,
        in_grads=jnp.zeros((M, flat.size), flat.dtype),
        in_features=jnp.zeros((M, self.teacher.num_features), jnp.float32),
        out_grads=jnp.zeros((M, flat.size), flat.dtype),
        n=jnp.zeros((), jnp.int32),
        pending=jnp.zeros((), bool),
      )
    return TeachingState(theta, memory, self._optimizer.init(theta), window)

  def _propose(self, theta, memory, g_flat, features) -> TeacherStep:
    return self.teacher.step_flat(
      theta, memory, g_flat, features if self.teacher.num_features else None
    )

  def update(
    self,
    grads: Any,
    state: TeachingState,
    loss_params: Any,
    features: jax.Array | None = None,
    outcome: Outcome | None = None,
  ) -> tuple[Any, TeachingState, TeachingInfo]:
    """The loss parameters after the teacher's step on the hypergradient `grads` (same pytree as
    `loss_params`), the new state, and what happened. `features` (the student-state features,
    `teacher.NUM_STATE_FEATURES` of them) are needed when the teacher takes them; `outcome` is
    needed by "reunroll" and refused by "window"."""
    if (outcome is None) != (self.gradient == "window"):
      raise ValueError(
        f"teacher.gradient='{self.gradient}' "
        + (
          "needs an outcome function (the segment re-run on the proposal)"
          if outcome is None
          else "takes no outcome function"
        )
      )
    if self.teacher.num_features and features is None:
      raise ValueError(
        f"this teacher takes {self.teacher.num_features} student-state features; pass features="
      )
    if not self.teacher.num_features:
      features = jnp.zeros((0,), jnp.float32)
    g_flat, unravel = ravel_pytree(grads)
    phi_flat = ravel_pytree(loss_params)[0]
    if self.gradient == "window":
      return self._window_update(g_flat, state, phi_flat, unravel, features)
    return self._reunroll_update(g_flat, state, phi_flat, unravel, features, outcome)

  def _window_update(self, g_flat, state, phi_flat, unravel, features):
    ok_g = jnp.all(jnp.isfinite(g_flat))
    # g is the outcome of the previous step; a full window updates the teacher first.
    w = state.window
    record = w.pending & ok_g
    out_grads = jnp.where(record, w.out_grads.at[w.n].set(g_flat), w.out_grads)
    n = w.n + record.astype(jnp.int32)
    full = n == self.teacher_every

    def teacher_update(carry):
      theta, opt_state = carry
      grads = jax.grad(self.teacher.surrogate_loss)(
        theta, w.memory0, w.in_grads, w.in_features, out_grads
      )
      updates, opt_state = self._optimizer.update(grads, opt_state, theta)
      return optax.apply_updates(theta, updates), opt_state, all_finite(grads)

    theta, opt_state, ok_teacher = jax.lax.cond(
      full,
      teacher_update,
      lambda carry: (*carry, jnp.array(True)),
      (state.teacher_params, state.opt_state),
    )
    n = jnp.where(full | ~ok_g, 0, n)

    step = self._propose(theta, state.memory, g_flat, features)
    apply = ok_g & jnp.all(jnp.isfinite(step.updates))
    window = Window(
      memory0=_select(n == 0, state.memory, w.memory0),
      in_grads=jnp.where(apply, w.in_grads.at[n].set(g_flat), w.in_grads),
      in_features=jnp.where(apply, w.in_features.at[n].set(features), w.in_features),
      out_grads=out_grads,
      n=jnp.where(apply, n, 0),  # a skipped step ends the window without a teacher update
      pending=apply,
    )
    new_state = TeachingState(theta, _select(apply, step.memory, state.memory), opt_state, window)
    info = TeachingInfo(
      applied=apply,
      teacher_updated=full & ok_teacher,
      teacher_skipped=full & ~ok_teacher,
      outcome_loss=jnp.full((), jnp.nan, jnp.float32),
      outcome_aux=(),
    )
    return unravel(jnp.where(apply, phi_flat + step.updates, phi_flat)), new_state, info

  def _reunroll_update(self, g_flat, state, phi_flat, unravel, features, outcome):
    ok_g = jnp.all(jnp.isfinite(g_flat))
    theta, memory = state.teacher_params, state.memory

    def proposed(th):  # phi'(theta), with g, the features and the memory held fixed
      return unravel(phi_flat + self._propose(th, memory, g_flat, features).updates)

    step = self._propose(theta, memory, g_flat, features)
    (loss, aux), grads = jax.value_and_grad(lambda th: outcome(proposed(th)), has_aux=True)(theta)
    if self.axis_name:
      loss, grads = jax.lax.pmean((loss, grads), self.axis_name)
    # A proposal is kept when it is finite and the student trained on it stays finite.
    apply = ok_g & jnp.all(jnp.isfinite(step.updates)) & jnp.isfinite(loss)
    learn = apply & all_finite(grads)
    opt = self._optimizer
    updates, opt_state = opt.update(grads, state.opt_state, theta)
    theta, opt_state = _select(
      learn, (optax.apply_updates(theta, updates), opt_state), (theta, state.opt_state)
    )
    updated = learn & opt.has_updated(opt_state) if self._accumulates else learn
    new_state = TeachingState(theta, _select(apply, step.memory, memory), opt_state, ())
    info = TeachingInfo(
      applied=apply,
      teacher_updated=updated,
      teacher_skipped=apply & ~learn,
      outcome_loss=loss,
      outcome_aux=aux,
    )
    return unravel(jnp.where(apply, phi_flat + step.updates, phi_flat)), new_state, info
