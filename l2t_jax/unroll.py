"""Student segments: K optax updates under a (possibly learned) loss, as one `lax.scan`.

`unroll` runs the segment; `hypergradient` differentiates the validation loss after the segment
with respect to the loss parameters, by reverse mode through every update of the scan.
Loss functions have the signature `loss_fn(loss_params, logits, labels) -> scalar`. How a segment
runs (its memory policy, how a step's batch is made, the device axis) is one `UnrollOptions`; an
`rng` gives every step its own key, for students with Dropout. What a step logs besides its loss
is the classifier's cross-entropy and accuracy, or a task's own pair (`UnrollOptions.stats`).

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
# (outputs, labels) -> (the task's standard loss, its accuracy): what a step logs besides its loss
# (classification: cross-entropy and accuracy; detection and segmentation: l2t_jax.tasks)
StatsFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

REMAT_POLICIES = ("none", "step", "dots", "sqrt")  # memory policies: see _remat_scan


class StudentState(NamedTuple):
  params: Any
  model_state: Any
  opt_state: Any


class UnrollOptions(NamedTuple):
  """How a segment runs, apart from what it trains."""

  remat: str = "none"  # memory policy of the reverse pass (REMAT_POLICIES, see _remat_scan)
  fetch: Callable[[Any], dict] | None = None  # makes a step's batch from its entry, in the scan
  axis_name: str | None = None  # the device axis of a data-parallel run (module docstring)
  stats: StatsFn | None = None  # a step's (standard loss, accuracy); None: classification's


class StepStats(NamedTuple):
  """Per-step training statistics: the loss the student descended, and its CE and accuracy (a
  task's standard loss and accuracy with `UnrollOptions.stats`)."""

  loss: jax.Array
  ce: jax.Array
  accuracy: jax.Array


class ValStats(NamedTuple):
  loss: jax.Array
  accuracy: jax.Array


def init_student_state(
  student: Student, optimizer: optax.GradientTransformation, rng: jax.Array, sample_x: jax.Array
) -> StudentState:
  params, model_state = student.init(rng, sample_x)
  return StudentState(params, model_state, optimizer.init(params))


def classification_stats(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A classifier's step statistics: cross-entropy and accuracy."""
  return losses.cross_entropy(logits, labels), losses.accuracy(logits, labels)


def _pmean(tree: Any, axis_name: str | None) -> Any:
  return jax.lax.pmean(tree, axis_name) if axis_name else tree


def student_step(
  student: Student,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFn,
  loss_params: Any,
  state: StudentState,
  batch: dict,
  axis_name: str | None = None,
  rng: jax.Array | None = None,
  stats: StatsFn | None = None,
) -> tuple[StudentState, StepStats]:
  """One student update on `loss_fn(loss_params, ...)`: the student stage of the method. `rng`
  keys the student's randomness (Dropout); data-parallel, each device folds in its index. `stats`
  gives the step's logged (standard loss, accuracy); None: cross-entropy and accuracy."""
  if rng is not None and axis_name:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def objective(params):
    # (a student without randomness may take no key: it is passed only when there is one)
    args = (params, state.model_state, batch["x"], True) + (() if rng is None else (rng,))
    logits, model_state = student.apply(*args)
    return loss_fn(loss_params, logits, batch["y"]), (logits, model_state)

  (loss, (logits, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  grads, model_state = _pmean((grads, model_state), axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  logits = jax.lax.stop_gradient(logits)
  ce, accuracy = (stats or classification_stats)(logits, batch["y"])
  return StudentState(params, model_state, opt_state), _pmean(
    StepStats(loss, ce, accuracy), axis_name
  )


def _identity(x):
  return x


def _remat_scan(body, carry, xs, length: int, policy: str):
  """`lax.scan(body, carry, xs)` with the memory of its reverse pass bounded by `policy`:

  none: every intermediate of every step is kept (fastest, memory grows with K);
  step: each step is recomputed in the reverse pass, only the carries are kept (O(K) carries);
  dots: each step keeps only its matrix-product outputs (between the two);
  sqrt: blocks of about sqrt(K) steps are recomputed from their first carry, and inside a block
        each step from its own carry (O(sqrt K) carries, about one extra forward pass).
  """
  if policy == "none" or length == 0:
    return jax.lax.scan(body, carry, xs, length=length)
  if policy == "step":
    return jax.lax.scan(jax.checkpoint(body), carry, xs, length=length)
  if policy == "dots":
    saveable = jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    return jax.lax.scan(jax.checkpoint(body, policy=saveable), carry, xs, length=length)
  if policy != "sqrt":
    raise ValueError(f"meta.remat='{policy}' is not one of {REMAT_POLICIES}")
  block = max(1, int(round(length**0.5)))
  blocks, tail = divmod(length, block)
  step = jax.checkpoint(body)

  @jax.checkpoint
  def run_block(c, block_xs):
    return jax.lax.scan(step, c, block_xs, length=block)

  head = jax.tree_util.tree_map(
    lambda x: x[: blocks * block].reshape((blocks, block) + x.shape[1:]), xs
  )
  carry, ys = jax.lax.scan(run_block, carry, head, length=blocks)
  ys = jax.tree_util.tree_map(lambda y: y.reshape((blocks * block,) + y.shape[2:]), ys)
  if tail:
    rest = jax.tree_util.tree_map(lambda x: x[blocks * block :], xs)
    carry, ys_tail = jax.lax.scan(step, carry, rest, length=tail)
    ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)
  return carry, ys


def unroll(
  student: Student,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFn,
  loss_params: Any,
  state: StudentState,
  batches: Any,
  *,
  options: UnrollOptions = UnrollOptions(),
  rng: jax.Array | None = None,
) -> tuple[StudentState, StepStats]:
  """Runs one student step per leading entry of `batches`; stats are stacked over steps.

  `options.fetch` (optional) makes each step's batch from its entry inside the scan, e.g. a gather
  from indices, so that K batches never exist at once and the reverse pass keeps only the indices.
  With `rng`, step i gets the key `fold_in(rng, i)`: the same segment re-run draws the same masks.
  """
  fetch = options.fetch or _identity
  length = jax.tree_util.tree_leaves(batches)[0].shape[0]

  def body(carry, xs):
    entry, i = xs
    key = None if rng is None else jax.random.fold_in(rng, i)
    return student_step(
      student,
      optimizer,
      loss_fn,
      loss_params,
      carry,
      fetch(entry),
      options.axis_name,
      key,
      options.stats,
    )

  return _remat_scan(body, state, (batches, jnp.arange(length)), length, options.remat)


def validate_student(
  student: Student, state: StudentState, val_fn: ValFn, batch: dict, stats: StatsFn | None = None
) -> ValStats:
  """`val_fn` and the accuracy (`stats`' second value, or the classifier's) on `batch`."""
  logits, _ = student.apply(state.params, state.model_state, batch["x"], False)
  accuracy = (stats or classification_stats)(logits, batch["y"])[1]
  return ValStats(val_fn(logits, batch["y"]), accuracy)


class Hypergradient(NamedTuple):
  val: ValStats  # validation loss and accuracy after the segment
  grads: Any  # d val.loss / d loss_params
  student: StudentState  # the student after the segment
  train: StepStats  # per-step statistics of the segment


def segment_objective(
  student: Student,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFn,
  val_fn: ValFn,
  state: StudentState,
  batches: Any,
  val_batch: dict,
  *,
  prepare: Callable[[Any], Any] | None = None,
  options: UnrollOptions = UnrollOptions(),
  rng: jax.Array | None = None,
) -> Callable[[Any], tuple[jax.Array, Any]]:
  """`loss_params -> (validation loss, (validation accuracy, student after, step stats))` of the
  segment from `state` on `batches`; differentiable in `loss_params` (this device's slice of the
  validation batch when data-parallel: average gradients and results over the axis)."""

  def objective(loss_params):
    prepared = prepare(loss_params) if prepare else loss_params
    new_state, stats = unroll(
      student, optimizer, loss_fn, prepared, state, batches, options=options, rng=rng
    )
    val = validate_student(student, new_state, val_fn, val_batch, options.stats)
    return val.loss, (val.accuracy, new_state, stats)

  return objective


def hypergradient(
  student: Student,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFn,
  val_fn: ValFn,
  loss_params: Any,
  state: StudentState,
  batches: Any,
  val_batch: dict,
  *,
  prepare: Callable[[Any], Any] | None = None,
  options: UnrollOptions = UnrollOptions(),
  rng: jax.Array | None = None,
) -> Hypergradient:
  """The validation loss after a K-step segment and its gradient w.r.t. `loss_params`.

  `prepare` (optional) maps `loss_params` once per segment to what `loss_fn` takes (e.g. the DLN
  tabulated: `StudentLoss.tabulate`); the gradient flows through it.

  Data-parallel, each device differentiates the validation loss of its slice of `val_batch`
  (the collectives inside the segment carry every device's contribution back through the others);
  the mean over devices of those gradients is the gradient of the global validation loss.
  """
  objective = segment_objective(
    student,
    optimizer,
    loss_fn,
    val_fn,
    state,
    batches,
    val_batch,
    prepare=prepare,
    options=options,
    rng=rng,
  )
  (val_loss, (val_acc, new_state, stats)), grads = jax.value_and_grad(objective, has_aux=True)(
    loss_params
  )
  val_loss, val_acc, grads = _pmean((val_loss, val_acc, grads), options.axis_name)
  return Hypergradient(ValStats(val_loss, val_acc), grads, new_state, stats)


def all_finite(tree: Any) -> jax.Array:
  leaves = jax.tree_util.tree_leaves(tree)
  return (
    jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)
  )
