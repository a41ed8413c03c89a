"""The DLN as a table: evaluated once per segment on a grid, interpolated for every item.

Each 1-vs-1 item's value depends on its own `(p_c, y_c)` only, so for a fixed `phi` the DLN is
two functions of one variable (one for `y_c = 1`, one for `y_c = 0`). Within a segment `phi` does
not change, so instead of running the item network on all `batch * classes` items at every student
step (and twice more in the reverse pass), we tabulate it once on a grid of the item's logit
`t = log(p / (1 - p))` and interpolate with cubic Hermite splines (values and slopes at the knots,
C1 in `t`). The cross-entropy skip path `skip * (-y log p)` stays exact; only the residual network
is tabulated, so at initialisation the tabulated DLN is cross-entropy exactly (the free network,
which has no skip path, is tabulated whole). A one_vs_one item depends on two probabilities and has
no such table: `config.validate` refuses that combination, `make_table` too. Outside the grid the
residual continues linearly with the network's own slope there (the network's inputs are clipped,
so it is flat out there); a bounded table keeps it at zero on the side where cross-entropy tends to
zero instead. The table is a differentiable function of `phi`, so hypergradients flow
through it into `phi`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax.custom_derivatives import SymbolicZero

from l2t_jax.dln import DLN, LOG_P_CAP, Params


class DLNTable(NamedTuple):
  """Cubic pieces of the residual: row `y * (G + 1) + k` holds the coefficients of piece k for
  target y, in powers of the position inside the piece (in grid steps). Piece 0 continues below the
  grid, pieces 1..G-1 are the Hermite cubics between knots, piece G continues above it."""

  coefficients: jax.Array  # (2 * (G + 1), 4)
  skip: jax.Array  # weight of the exact cross-entropy path
  t_lo: float  # the grid spans t in [t_lo, t_hi]: the logits where the network's inputs are
  t_hi: float  # clipped (log p = -log_clip) and capped (log p = dln.LOG_P_CAP): its kinks
  size: int  # G knots


def item_logit(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(log p_c, t_c)` with `t_c = log p_c - log(1 - p_c)`, accurate for p_c near 0 and near 1.

  With `e_c = exp(z_c - max z)` and `R` the sum of `e_c` over all classes but the top one:
  `p_c = e_c / (1 + R)`, so `t_top = -log R` (a log-sum-exp) and `t_c = log e_c - log1p(R - e_c)` otherwise, with no
  cancellation anywhere.
  """
  top = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=bool)
  shifted = logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True))
  e = jnp.exp(shifted)
  rest = jnp.where(top, 0.0, e).sum(-1, keepdims=True)
  # exp(shifted_top) - 1: zero in value, but it carries the top logit's gradient.
  top_excess = jnp.where(top, jnp.expm1(shifted), 0.0).sum(-1, keepdims=True)
  log_p = shifted - jnp.log1p(rest + top_excess)
  # log R as a log-sum-exp over the other classes: finite, with bounded first and second
  # derivatives, even when every e_c underflows (huge logits late in training).
  log_rest = jax.nn.logsumexp(jnp.where(top, -jnp.inf, shifted), axis=-1, keepdims=True)
  t = jnp.where(
    top, shifted - log_rest, shifted - jnp.log1p(top_excess + rest - jnp.where(top, 0.0, e))
  )
  return log_p, t


def _logit_of_log_p(log_p: float) -> float:
  return log_p - math.log(-math.expm1(log_p))


def grid_bounds(dln: DLN) -> tuple[float, float]:
  """The item logits at which the network's clipped inputs stop changing."""
  return (_logit_of_log_p(-dln.network.log_clip), _logit_of_log_p(LOG_P_CAP))


def effective_skip(phi: Params) -> jax.Array:
  """The weight of the exact cross-entropy path, the DLN's learned scale included (0 for the free
  network, which has none)."""
  skip = phi["skip"] if "skip" in phi else jnp.zeros(())
  return skip * jnp.exp(phi["log_scale"]) if "log_scale" in phi else skip


def _clamp_slopes(d, t, skip_slope, ys, h, bound, floor):
  """Residual slopes (per grid step, at item logits `t`) such that every item's whole slope lies
  between `floor` and `bound` times its binary cross-entropy's, on the side that never rewards a
  wrong answer."""
  bce = h * jnp.where(
    ys == 1, -jax.nn.sigmoid(-t), jax.nn.sigmoid(t)
  )  # slope of -log p or -log(1-p)
  lo, hi = floor * bce, bound * bce
  total = jnp.clip(d + skip_slope, jnp.minimum(lo, hi), jnp.maximum(lo, hi))
  return total - skip_slope


def _smooth_damping(d, ys, h, curvature_bound):
  """The clamped slopes (per grid step) damped further where they rise faster than
  `curvature_bound` (per unit of item logit, as the slope of binary cross-entropy rises at most
  by 1/4): each slope is moved towards zero, never past it, to the largest value within that rate
  of every other knot's. The loss the student trains on is then nowhere sharper than the bound
  lets it be, where a clamp that switches an item's push on over a fraction of a knot makes it
  locally as sharp as a step: a spike in the curvature that a student at a large rate is unstable
  on. Slopes are negative for targets (y = 1) and positive for the others."""
  step = curvature_bound * h * h  # the largest change of a per-step slope between two knots
  k = jnp.arange(d.shape[1], dtype=d.dtype) * step
  # For targets the envelope from above (towards zero): max_j d_j - step |i - j|; for the others
  # from below: min_j d_j + step |i - j|. Both as running extrema of the slopes shifted by k.
  sign = jnp.where(ys == 1, 1.0, -1.0)  # flips the others' case into the targets'
  x = sign * d
  forward = jax.lax.cummax(x + k, axis=1) - k
  backward = jax.lax.cummax(x - k, axis=1, reverse=True) + k
  return sign * jnp.maximum(forward, backward)


def _integrate(d, ys):
  """Residual values whose slopes (per grid step) are `d`, zero where cross-entropy's item value
  is: p -> 1 for the target (last knot), p -> 0 for the others (first knot)."""
  steps = jnp.cumsum(0.5 * (d[:, :-1] + d[:, 1:]), axis=1)  # trapezoids, in grid steps
  v = jnp.concatenate([jnp.zeros_like(steps[:, :1]), steps], axis=1)
  return v - jnp.where(ys == 1, v[:, -1:], v[:, :1])


def make_table(
  dln: DLN,
  phi: Params,
  size: int,
  slope_bound: float = 0.0,
  slope_floor: float = 0.0,
  curvature_bound: float = 0.0,
) -> DLNTable:
  """Tabulates the residual of `dln` (item value minus the exact skip path) at `size` knots.

  `slope_bound` > 0 tabulates the DLN bounded instead: each item's slope in its logit clamped
  between 0 and `slope_bound` times the slope of its binary cross-entropy (-log p for the target,
  -log(1 - p) for the others), its values the integral of the clamped slopes, zero where
  cross-entropy's are (so it reads like one: about zero for a confident right answer, positive
  otherwise). The student is then never rewarded for lowering the target's probability or raising
  another's, and its gradient is never more than `slope_bound` times a cross-entropy gradient.
  `slope_floor` (with a bound) keeps at least that fraction of cross-entropy's slope on every item:
  the loss can damp an item but never give it up. `curvature_bound` (with a bound) damps further
  wherever the bounded slopes change faster than that per unit of item logit (`_smooth_damping`)."""
  if dln.pairs:
    raise ValueError(
      "one_vs_one DLN items depend on two probabilities and cannot be tabulated: "
      "set dln.table_size=0"
    )
  skip = effective_skip(phi)
  t_lo, t_hi = grid_bounds(dln)
  h = (t_hi - t_lo) / (size - 1)

  def residual(t, y):
    log_p = jax.nn.log_sigmoid(t)
    return dln.network.apply({"params": phi}, log_p, y) - skip * (-y * log_p)

  def value_and_step_slope(t, y):  # slope per grid step
    return jax.jvp(lambda s: residual(s, y), (t,), (jnp.full_like(t, h),))

  ys = jnp.array([0.0, 1.0])[:, None]
  grid = jnp.linspace(t_lo, t_hi, size)
  beyond = jnp.array([t_lo - 1.0, t_hi + 1.0])
  # The knots and the two points beyond the grid in one evaluation of the network.
  v, d = value_and_step_slope(
    jnp.broadcast_to(jnp.concatenate([grid, beyond]), (2, size + 2)),
    jnp.broadcast_to(ys, (2, size + 2)),
  )
  v, d, d_tail = v[:, :size], d[:, :size], d[:, size:]
  if slope_bound:
    # The skip path skip * (-y log sigmoid(t)) has slope -skip y sigmoid(-t), per grid step:
    skip_slope, skip_slope_beyond = (-skip * h * ys * jax.nn.sigmoid(-t) for t in (grid, beyond))
    d = _clamp_slopes(d, grid, skip_slope, ys, h, slope_bound, slope_floor)
    d_tail = _clamp_slopes(d_tail, beyond, skip_slope_beyond, ys, h, slope_bound, slope_floor)
    if curvature_bound:  # on the whole slope; the floor, if any, holds again after it
      d = _smooth_damping(d + skip_slope, ys, h, curvature_bound) - skip_slope
      d = _clamp_slopes(d, grid, skip_slope, ys, h, slope_bound, slope_floor)
    v = _integrate(d, ys)
    # Beyond the grid, on the side where cross-entropy's item value tends to zero, the residual
    # stays at its zero end: continued linearly with the slope of the last point it would fall
    # below zero for huge logits, a reward that a diverging student can chase without bound.
    d_tail = d_tail * jnp.array([[0.0, 1.0], [1.0, 0.0]])  # rows: y = 0, 1; columns: below, above
  v0, v1, d0, d1 = v[:, :-1], v[:, 1:], d[:, :-1], d[:, 1:]
  cubic = jnp.stack([v0, d0, 3 * (v1 - v0) - 2 * d0 - d1, 2 * (v0 - v1) + d0 + d1], -1)
  zeros = jnp.zeros((2, 1))
  below = jnp.stack([v[:, :1], d_tail[:, :1], zeros, zeros], -1)
  above = jnp.stack([v[:, -1:], d_tail[:, 1:], zeros, zeros], -1)
  coefficients = jnp.concatenate([below, cubic, above], axis=1).reshape(2 * (size + 1), 4)
  return DLNTable(coefficients, skip, t_lo, t_hi, size)


def _check_labels(logits: jax.Array, labels: jax.Array) -> None:
  if labels.shape != logits.shape[:-1]:
    raise ValueError(
      f"labels shaped {labels.shape} do not fit logits shaped {logits.shape}: "
      "expected integer labels with the logits' leading shape"
    )


def table_item_values(table: DLNTable, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The tabulated value of every (sample, class) item, shape `logits.shape`."""
  _check_labels(logits, labels)
  y = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  log_p, t = item_logit(logits)
  return _interpolate(table, log_p, t, y)


def table_item_loss(table: DLNTable, p: jax.Array, y: jax.Array) -> jax.Array:
  """The tabulated value of binary items given their probability `p` and target `y` directly
  (what the student is trained on; e.g. to plot the learned loss)."""
  log_p = jnp.log(p)
  return _interpolate(table, log_p, log_p - jnp.log1p(-p), y)


def _piece(table_lo, table_hi, size: int, t: jax.Array, y: jax.Array):
  """The row of each item's cubic piece, its position `s` inside the piece (in grid steps) and
  the knots per unit of item logit (ds/dt)."""
  per_t = (size - 1) / (table_hi - table_lo)
  u = (t - table_lo) * per_t
  knot = jnp.clip(jnp.floor(jax.lax.stop_gradient(u)), -1, size - 1)
  row = y.astype(jnp.int32) * (size + 1) + knot.astype(jnp.int32) + 1
  return row, u - jnp.maximum(knot, 0), per_t


def _interpolate(table: DLNTable, log_p: jax.Array, t: jax.Array, y: jax.Array) -> jax.Array:
  row, s, _ = _piece(table.t_lo, table.t_hi, table.size, t, y)
  c = table.coefficients.at[row].get(mode="promise_in_bounds")
  residual = c[..., 0] + s * (c[..., 1] + s * (c[..., 2] + s * c[..., 3]))
  return table.skip * (-y * log_p) + residual


def table_loss(table: DLNTable, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The tabulated DLN loss: mean over samples of the sum over classes.

  The same function as `table_item_values(...).sum(-1).mean()`, with its first and second
  derivatives written out (`_loss`, `_value_and_grad`): at every student step one pass over the
  items gives the value and the logits' gradient, and a hypergradient's reverse pass recomputes
  the items once for the Hessian-vector product and the table's gradient, where automatic
  differentiation of `item_logit` and the lookup took many more passes (benchmarks/speed.py,
  README's speed section)."""
  _check_labels(logits, labels)
  # Classes first: the sums over classes become sums of rows and the items lie along the minor
  # axis, which XLA's CPU loops vectorise (ten classes along it do not).
  by_class = logits.reshape(-1, logits.shape[-1]).T
  return _loss(table.coefficients, table.skip, table.t_lo, table.t_hi, by_class, labels.reshape(-1))


class _Items(NamedTuple):
  """What the derivatives of the tabulated loss need of each (sample, class) item.

  With `q^(c)` the softmax over the classes other than c, the item logit's gradient is
  `dt_c/dz = onehot(c) - q^(c)`. For the top class `q^(top) = q` (finite when every other
  probability underflows); for the others `q^(c)_j = e_j * inv_c`, `inv_c = 1 / sum_{j != c} e_j`
  (at least 1, the top class's e being 1)."""

  y: jax.Array  # one-hot targets
  top: jax.Array  # one-hot argmax
  e: jax.Array  # exp(z - max z)
  p: jax.Array  # softmax
  log_p: jax.Array
  inv: jax.Array  # 1 / sum over the other classes of e (0 for the top class)
  q: jax.Array  # softmax over the classes other than the top one (0 for the top class)
  row: jax.Array  # the item's cubic piece in the table
  s: jax.Array  # its position inside the piece, in grid steps
  per_t: jax.Array  # grid steps per unit of item logit
  c: jax.Array  # the piece's coefficients, (..., 4)
  n: int  # samples the loss is the mean over


def _computed_once(*arrays: jax.Array) -> tuple[jax.Array, ...]:
  """The same arrays, each the output of a reduction: XLA's CPU fusion recomputes an elementwise
  chain inside every fusion that reads it (and a gather's index chain for every gathered column),
  but never fuses a reduction into its readers, so each array is computed once and stored. (An
  `optimization_barrier` does not do this: XLA removes it before fusing.) On other backends the
  arrays are returned as they are: there a recomputation inside a fused kernel is cheap and every
  reduction is one more kernel to launch."""
  if jax.default_backend() != "cpu":
    return arrays
  out = []
  for x in arrays:
    low = jnp.iinfo(x.dtype).min if jnp.issubdtype(x.dtype, jnp.integer) else -jnp.inf
    out.append(jnp.stack([x, jnp.full_like(x, low)], -1).max(-1))
  return tuple(out)


def _items(coefficients, t_lo, t_hi, logits, labels) -> _Items:
  """For logits shaped (classes, samples) and flat labels: item logits as `item_logit` computes
  them (the same values to float rounding), with the softmax pieces of their derivatives, and
  each item's place in the table: one exponential and one logarithm per item, each computed once
  (`_computed_once`)."""
  size = coefficients.shape[0] // 2 - 1
  classes = jnp.arange(logits.shape[0])[:, None]
  y = (labels[None, :] == classes).astype(logits.dtype)
  top = (jnp.argmax(logits, 0)[None, :] == classes).astype(logits.dtype)
  shifted = logits - logits.max(0, keepdims=True)
  others = jnp.where(top > 0, -jnp.inf, shifted)
  runner_up = others.max(0, keepdims=True)
  f = jnp.exp(others - runner_up)  # e relative to the runner-up's: at most 1, 0 for the top class
  f_sum = f.sum(0, keepdims=True)  # at least 1
  e_others = f * jnp.exp(runner_up)
  rest = e_others.sum(0, keepdims=True)
  log_others = jnp.log1p(rest - e_others)  # log of the other classes' sum of e, non-top classes
  t = jnp.where(top > 0, -(runner_up + jnp.log(f_sum)), shifted - log_others)
  y, top, e_others, f, f_sum, rest, t = _computed_once(y, top, e_others, f, f_sum, rest, t)
  inv = (1.0 - top) / (1.0 + (rest - e_others))
  row, s, per_t = _piece(t_lo, t_hi, size, t, y)
  row = checkpoint_name(_computed_once(row)[0], "dln_table_row")
  c = coefficients.at[row].get(mode="promise_in_bounds")
  n = logits.shape[1]
  e = e_others + top
  return _Items(
    y, top, e, e / (1.0 + rest), shifted - jnp.log1p(rest), inv, f / f_sum, row, s, per_t, c, n
  )


def _q_transpose(it: _Items, w: jax.Array) -> jax.Array:
  """`sum_c w_c q^(c)_j`: how weights on the items' logits reach the student's logits."""
  a = (w * it.inv).sum(0, keepdims=True)
  return it.e * (a - w * it.inv) + (w * it.top).sum(0, keepdims=True) * it.q


def _q_apply(it: _Items, dz: jax.Array) -> jax.Array:
  """`<q^(c), dz>` for every item c, so that `dt = dz - _q_apply(dz)`."""
  return it.inv * ((it.e * dz).sum(0, keepdims=True) - it.e * dz) + it.top * (it.q * dz).sum(
    0, keepdims=True
  )


def _slopes(it: _Items) -> tuple[jax.Array, jax.Array]:
  """The residual's first and second derivatives in the item logit."""
  c, s = it.c, it.s
  d1 = c[..., 1] + s * (2.0 * c[..., 2] + 3.0 * s * c[..., 3])
  d2 = 2.0 * c[..., 2] + 6.0 * s * c[..., 3]
  return d1 * it.per_t, d2 * it.per_t**2


def _moving(tangent) -> bool:
  """Whether a tangent can be non-zero: zero ones are left out of the rules below, so that the
  outer differentiation of a hypergradient never traces the item logits through them."""
  return not isinstance(tangent, SymbolicZero)


def _at_rows(coefficients: jax.Array, it: _Items) -> jax.Array:
  return coefficients.at[it.row].get(mode="promise_in_bounds")


def _value(it: _Items, skip) -> jax.Array:
  c, s = it.c, it.s
  residual = c[..., 0] + s * (c[..., 1] + s * (c[..., 2] + s * c[..., 3]))
  return (skip * (-it.y * it.log_p) + residual).sum() / it.n


def _grad(it: _Items, skip, slope) -> jax.Array:
  return (skip * (it.p - it.y) + slope - _q_transpose(it, slope)) / it.n


def _table_tangent(it: _Items, d_coefficients, d_skip) -> jax.Array:
  """The loss's change with the table (coefficients and skip weight), zero tangents left out."""
  terms = []
  if _moving(d_coefficients):
    dc, s = _at_rows(d_coefficients, it), it.s
    terms.append((dc[..., 0] + s * (dc[..., 1] + s * (dc[..., 2] + s * dc[..., 3]))).sum())
  if _moving(d_skip):
    terms.append(d_skip * (-it.y * it.log_p).sum())
  return sum(terms) / it.n if terms else 0.0


@jax.custom_jvp
def _loss(coefficients, skip, t_lo, t_hi, logits, labels):
  return _value_and_grad(coefficients, skip, t_lo, t_hi, logits, labels)[0]


def _loss_jvp(primals, tangents):
  coefficients, _, t_lo, t_hi, logits, labels = primals
  d_coefficients, d_skip, _, _, d_logits, _ = tangents  # the grid's ends are constants
  value, grad = _value_and_grad(*primals)
  tangent = (grad * d_logits).sum() if _moving(d_logits) else 0.0
  if _moving(d_coefficients) or _moving(d_skip):
    it = _items(coefficients, t_lo, t_hi, logits, labels)
    tangent = tangent + _table_tangent(it, d_coefficients, d_skip)
  return value, tangent + jnp.zeros_like(value)


_loss.defjvp(_loss_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _value_and_grad(coefficients, skip, t_lo, t_hi, logits, labels):
  """The loss and d loss / d logits, from one pass over the items."""
  it = _items(coefficients, t_lo, t_hi, logits, labels)
  return _value(it, skip), _grad(it, skip, _slopes(it)[0])


def _value_and_grad_jvp(primals, tangents):
  coefficients, skip, t_lo, t_hi, logits, labels = primals
  d_coefficients, d_skip, _, _, dz, _ = tangents
  it = _items(coefficients, t_lo, t_hi, logits, labels)
  value, grad = _value(it, skip), _grad(it, skip, _slopes(it)[0])
  moving = {
    name: t
    for name, t in (("coefficients", d_coefficients), ("skip", d_skip), ("logits", dz))
    if _moving(t)
  }
  d_value, d_grad = jax.checkpoint(_tangents, policy=_SAVED)(primals, moving)
  return (value, grad), (d_value, d_grad)


# What the reverse pass keeps of each step's items rather than recompute: their table rows (an
# index computation of about 20 µs per CPU student step, for one number per item; the gather of
# the rows' coefficients is cheaper to repeat than to store; benchmarks/results/README.md, speed
# section).
_SAVED = jax.checkpoint_policies.save_only_these_names("dln_table_row")


def _tangents(primals, moving: dict) -> tuple[jax.Array, jax.Array]:
  """The tangents of the loss and of its logits' gradient: the Hessian-vector product in the
  logits and the gradient's change with the table. Checkpointed: a hypergradient's reverse pass
  recomputes the items from the logits (but for their rows, `_SAVED`) instead of
  keeping a dozen per-item arrays of every step."""
  coefficients, skip, t_lo, t_hi, logits, labels = primals
  it = _items(coefficients, t_lo, t_hi, logits, labels)
  slope, curvature = _computed_once(*_slopes(it))
  d_value = _table_tangent(
    it, moving.get("coefficients", SymbolicZero(None)), moving.get("skip", SymbolicZero(None))
  )
  w = jnp.zeros_like(slope)  # the change of each item's slope
  d_grad = jnp.zeros_like(slope)
  if "logits" in moving:
    dz = moving["logits"]
    d_value = d_value + (_grad(it, skip, slope) * dz).sum()
    q_dz = _q_apply(it, dz)
    w = curvature * (dz - q_dz)
    d_grad = (
      skip * it.p * (dz - (it.p * dz).sum(0, keepdims=True))
      - dz * _q_transpose(it, slope)
      + _q_transpose(it, slope * q_dz)
    )
  if "coefficients" in moving:
    dc, s = _at_rows(moving["coefficients"], it), it.s
    w = w + (dc[..., 1] + s * (2.0 * dc[..., 2] + 3.0 * s * dc[..., 3])) * it.per_t
  if "skip" in moving:
    d_grad = d_grad + moving["skip"] * (it.p - it.y)
  return (d_value + jnp.zeros((), logits.dtype), (d_grad + w - _q_transpose(it, w)) / it.n)


_value_and_grad.defjvp(_value_and_grad_jvp, symbolic_zeros=True)
