"""Student segments: K optax updates under a (possibly learned) loss, as one `lax.scan`.

`unroll` runs the segment; `hypergradient` differentiates the validation loss after the segment
with respect to the loss parameters, by reverse mode through every update of the scan.
Loss functions have the signature `loss_fn(loss_params, logits, labels) -> scalar`.

Data-parallel: with `axis_name` (the device axis of a `shard_map`), every device holds a slice of
the batch; student gradients, BatchNorm statistics, step statistics, validation results and
hypergradients are averaged over the axis (`lax.pmean`), so every device keeps the same state and
the result equals the one-device run on the global batch.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2t_jax import losses
from l2t_jax.students import Student

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
ValFn = Callable[[jax.Array, jax.Array], jax.Array]


class StudentState(NamedTuple):
  params: Any
  model_state: Any
  opt_state: Any


class StepStats(NamedTuple):
  """Per-step training statistics: the loss the student descended, and its CE and accuracy."""
  loss: jax.Array
  ce: jax.Array
  accuracy: jax.Array


class ValStats(NamedTuple):
  loss: jax.Array
  accuracy: jax.Array


def init_student_state(student: Student, optimizer: optax.GradientTransformation,
                       rng: jax.Array, sample_x: jax.Array) -> StudentState:
  params, model_state = student.init(rng, sample_x)
  return StudentState(params, model_state, optimizer.init(params))


def _pmean(tree: Any, axis_name: str | None) -> Any:
  return jax.lax.pmean(tree, axis_name) if axis_name else tree


def student_step(student: Student, optimizer: optax.GradientTransformation, loss_fn: LossFn,
                 loss_params: Any, state: StudentState, batch: dict,
                 axis_name: str | None = None) -> tuple[StudentState, StepStats]:
  """One student update on `loss_fn(loss_params, ...)`: the student stage of the method."""

  def objective(params):
    logits, model_state = student.apply(params, state.model_state, batch["x"], True)
    return loss_fn(loss_params, logits, batch["y"]), (logits, model_state)

  (loss, (logits, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  grads, model_state = _pmean((grads, model_state), axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  logits = jax.lax.stop_gradient(logits)
  stats = _pmean(StepStats(loss, losses.cross_entropy(logits, batch["y"]),
                           losses.accuracy(logits, batch["y"])), axis_name)
  return StudentState(params, model_state, opt_state), stats


def unroll(student: Student, optimizer: optax.GradientTransformation, loss_fn: LossFn,
           loss_params: Any, state: StudentState, batches: dict,
           remat: bool = False, axis_name: str | None = None) -> tuple[StudentState, StepStats]:
  """Runs one student step per leading entry of `batches`; stats are stacked over steps."""

  def body(carry, batch):
    return student_step(student, optimizer, loss_fn, loss_params, carry, batch, axis_name)

  if remat:
    body = jax.checkpoint(body)
  return jax.lax.scan(body, state, batches)


def validate_student(student: Student, state: StudentState, val_fn: ValFn,
                     batch: dict) -> ValStats:
  logits, _ = student.apply(state.params, state.model_state, batch["x"], False)
  return ValStats(val_fn(logits, batch["y"]), losses.accuracy(logits, batch["y"]))


class Hypergradient(NamedTuple):
  val: ValStats  # validation loss and accuracy after the segment
  grads: Any  # d val.loss / d loss_params
  student: StudentState  # the student after the segment
  train: StepStats  # per-step statistics of the segment


def hypergradient(student: Student, optimizer: optax.GradientTransformation, loss_fn: LossFn,
                  val_fn: ValFn, loss_params: Any, state: StudentState, batches: dict,
                  val_batch: dict, remat: bool = False,
                  axis_name: str | None = None) -> Hypergradient:
  """The validation loss after a K-step segment and its gradient w.r.t. `loss_params`.

  Data-parallel, each device differentiates the validation loss of its slice of `val_batch`
  (the collectives inside the segment carry every device's contribution back through the others);
  the mean over devices of those gradients is the gradient of the global validation loss.
  """

  def objective(lp):
    new_state, stats = unroll(student, optimizer, loss_fn, lp, state, batches, remat, axis_name)
    val = validate_student(student, new_state, val_fn, val_batch)
    return val.loss, (val.accuracy, new_state, stats)

  (val_loss, (val_acc, new_state, stats)), grads = jax.value_and_grad(
      objective, has_aux=True)(loss_params)
  val_loss, val_acc, grads = _pmean((val_loss, val_acc, grads), axis_name)
  return Hypergradient(ValStats(val_loss, val_acc), grads, new_state, stats)


def all_finite(tree: Any) -> jax.Array:
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)
