"""The loss the student trains on: a DLN, evaluated exactly or tabulated once per segment.

The DLN's parameters `phi` do not change within a segment, so a DLN whose items are functions of
one variable can be tabulated once per segment and interpolated at every student step
(`l2t_jax.dln_table`), optionally bounded by cross-entropy's slopes. `StudentLoss` holds that
choice, so that a training loop needs one object for the learned loss:

    loss = StudentLoss(dln, table_size=256, slope_bound=1.0)   # or make_student_loss(config.dln)
    phi = loss.init(rng)
    tabulated = loss.tabulate(phi)                # once per segment; differentiable in phi
    value = loss.loss(tabulated, logits, labels)  # at every student step

`tabulate` is the `prepare` of `unroll.hypergradient` and `loss` its `loss_fn`; with
`table_size=0` the DLN is evaluated exactly and `tabulate` returns `phi` itself. Any other
parametrised loss can be taught the same way through `FunctionLoss`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from l2t_jax import dln_table
from l2t_jax.dln import DLN, Params


@dataclasses.dataclass(frozen=True)
class StudentLoss:
  dln: DLN
  table_size: int = 0  # knots of the table; 0 evaluates the DLN exactly at every step
  slope_bound: float = 0.0  # > 0: bounded by that many times cross-entropy's slopes (dln_table)
  slope_floor: float = 0.0  # with a bound: the least fraction of cross-entropy's slope kept
  curvature_bound: float = 0.0  # with a bound: the slopes' largest rate of change (dln_table)

  def __post_init__(self):
    if self.table_size and self.dln.pairs:
      raise ValueError(
        "one_vs_one DLN items depend on two probabilities and cannot be tabulated: use table_size=0"
      )
    if (self.slope_bound or self.slope_floor) and not self.table_size:
      raise ValueError("slope_bound and slope_floor act on the table: set table_size > 0")

  def init(self, rng: jax.Array) -> Params:
    return self.dln.init(rng)

  def tabulate(self, phi: Params) -> Any:
    """What `loss` takes for this segment: the table of `phi`, or `phi` when exact."""
    if not self.table_size:
      return phi
    return dln_table.make_table(
      self.dln, phi, self.table_size, self.slope_bound, self.slope_floor, self.curvature_bound
    )

  def loss(self, tabulated: Any, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The mean loss of a batch under `tabulate(phi)`."""
    if not self.table_size:
      return self.dln.loss(tabulated, logits, labels)
    return dln_table.table_loss(tabulated, logits, labels)

  def item_values(self, tabulated: Any, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The value of every (sample, class) item under `tabulate(phi)`, shaped like `logits`: what
    the losses made of items sum (`l2t_jax.item_losses`: detection and segmentation)."""
    if not self.table_size:
      return self.dln.item_values(tabulated, logits, labels)
    return dln_table.table_item_values(tabulated, logits, labels)

  def __call__(self, phi: Params, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """`loss(tabulate(phi), ...)`: for one-off evaluations, not inside a segment."""
    return self.loss(self.tabulate(phi), logits, labels)


@dataclasses.dataclass(frozen=True)
class FunctionLoss:
  """A learned loss of your own, in `StudentLoss`'s shape: `init_fn(rng) -> params`,
  `loss_fn(prepared, logits, labels) -> scalar`, and optionally `tabulate_fn(params) -> prepared`
  (run once per segment; the identity by default)."""

  init_fn: Callable[[jax.Array], Any]
  loss_fn: Callable[[Any, jax.Array, jax.Array], jax.Array]
  tabulate_fn: Callable[[Any], Any] | None = None

  def init(self, rng: jax.Array) -> Any:
    return self.init_fn(rng)

  def tabulate(self, params: Any) -> Any:
    return params if self.tabulate_fn is None else self.tabulate_fn(params)

  def loss(self, tabulated: Any, logits: jax.Array, labels: jax.Array) -> jax.Array:
    return self.loss_fn(tabulated, logits, labels)
