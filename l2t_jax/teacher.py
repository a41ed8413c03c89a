"""The coordinate-wise LSTM teacher: turns the validation gradient of the DLN into a DLN update.

One small LSTM is shared by all DLN coordinates, each coordinate keeping its own memory (Andrychowicz
et al. 2016). Its input per coordinate is the preprocessed gradient, optionally with student-state
features broadcast to every coordinate; its output, times `output_scale`, is the update.

Offered optax-style, as pure functions that any training loop can jit and call:

    teacher = LSTMTeacher(hidden=20, layers=2, output_scale=1e-3, preprocess_p=10., num_features=4)
    theta = teacher.init(rng)                      # the teacher's own parameters
    memory = teacher.init_state(phi)               # one LSTM state per DLN coordinate
    updates, memory = teacher.step(theta, memory, grads_phi, features)
    phi = optax.apply_updates(phi, updates)

`surrogate_loss` is what the teacher learns from: replaying a window of its own steps, the
validation gradients observed after each step, dotted with the steps' outputs.

Two networks (`teacher.network`), both coordinate-wise:
- `lstm_readout` (ours): `layers` LSTM cells of `hidden` units each, then a linear readout of the
  last cell's output to one number per coordinate.
- `stacked_cells` (the authors'): `layers` LSTM cells, the first `layers - 1` of `hidden` units and
  the last of a single unit whose output, in (-1, 1), *is* the teacher's output; no readout. The
  authors' 2-64-64-64-1 teacher is `hidden=64, layers=4` (without student-state features). They
  subtract `1e-3` times that output from the DLN; we add `output_scale` times it, which for a
  network of symmetric initialisation is the same family. The cells are flax's
  (OptimizedLSTMCell: LeCun-normal input kernels, orthogonal recurrent kernels, zero biases), not
  torch's uniform initialisation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

Params = Any
Memory = Any  # tuple over layers of (c, h), each shaped (num_coordinates, that layer's width)

TEACHER_NETWORKS = ("lstm_readout", "stacked_cells")  # see the module docstring
NUM_STATE_FEATURES = 4  # progress, train loss, validation loss, validation accuracy


def preprocess_gradient(g: jax.Array, p: float) -> jax.Array:
  """`(log|g|/p, sign g)` where `|g| >= e^-p`, else `(-1, e^p g)`; shape `g.shape + (2,)`."""
  g = jnp.asarray(g)
  magnitude = jnp.abs(g)
  big = magnitude >= jnp.exp(-p)
  safe = jnp.where(big, magnitude, 1.0)  # keeps log finite on the branch that is not taken
  first = jnp.where(big, jnp.log(safe) / p, -1.0)
  second = jnp.where(big, jnp.sign(g), jnp.exp(p) * g)
  return jnp.stack([first, second], axis=-1)


def cell_widths(network: str, hidden: int, layers: int) -> tuple[int, ...]:
  """The width of every LSTM cell of a teacher `network` (module docstring)."""
  if network == "lstm_readout":
    return (hidden,) * layers
  if network == "stacked_cells":
    return (hidden,) * (layers - 1) + (1,)
  raise ValueError(f"teacher.network='{network}' is not one of {TEACHER_NETWORKS}")


class CoordinateLSTM(nn.Module):
  """The teacher network as flax modules: it defines the parameters (their names, shapes and
  initialisation are flax's OptimizedLSTMCell's) and is the reference that `coordinate_lstm`,
  which the teacher runs, is tested against."""

  hidden: int
  layers: int
  network: str = "lstm_readout"

  @nn.compact
  def __call__(self, memory, inputs):
    new_memory = []
    h = inputs
    for i, width in enumerate(cell_widths(self.network, self.hidden, self.layers)):
      carry, h = nn.OptimizedLSTMCell(width, name=f"lstm_{i}")(memory[i], h)
      new_memory.append(carry)
    if self.network == "stacked_cells":
      return tuple(new_memory), h[..., 0]
    out = nn.Dense(1, name="readout")(h)[..., 0]
    return tuple(new_memory), out


_GATES = "ifgo"  # OptimizedLSTMCell's gates, in the order of its fused kernel


def _cell(params: Params, c: jax.Array, h: jax.Array, x: jax.Array):
  """flax's OptimizedLSTMCell with the coordinates along the minor axis: `c`, `h` shaped
  (width, coordinates), `x` (inputs, coordinates)."""
  w_h = jnp.concatenate([params[f"h{g}"]["kernel"] for g in _GATES], -1)
  w_i = jnp.concatenate([params[f"i{g}"]["kernel"] for g in _GATES], -1)
  bias = jnp.concatenate([params[f"h{g}"]["bias"] for g in _GATES], -1)
  i, f, g, o = jnp.split((w_h.T @ h + bias[:, None]) + w_i.T @ x, 4)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def coordinate_lstm(
  theta: Params, memory: Memory, inputs: jax.Array, network: str
) -> tuple[Memory, jax.Array]:
  """`CoordinateLSTM.apply` (the same parameters, memory layout and results to float rounding),
  computed with the coordinates along the minor axis. Laid out as flax lays it, every gate is a
  slice 20 wide of each coordinate's row, and its sigmoids and tanhs ran half again as slow on
  the CPU (benchmarks/results/README.md); here each gate is a contiguous block. The memory stays
  (coordinates, width), as checkpoints hold it: its transposes cancel between the steps of a
  window."""
  x = inputs.T
  new_memory = []
  for i, (c, h) in enumerate(memory):
    c, x = _cell(theta[f"lstm_{i}"], c.T, h.T, x)
    new_memory.append((c.T, x.T))
  if network == "stacked_cells":
    return tuple(new_memory), x[0]
  readout = theta["readout"]
  return tuple(new_memory), readout["kernel"][:, 0] @ x + readout["bias"][0]


class TeacherStep(NamedTuple):
  updates: jax.Array
  memory: Memory


@dataclasses.dataclass(frozen=True)
class LSTMTeacher:
  hidden: int
  layers: int
  output_scale: float
  preprocess_p: float
  num_features: int = 0  # student-state features broadcast to every coordinate (0: gradient only)
  network: str = "lstm_readout"  # or "stacked_cells" (module docstring)

  @property
  def _net(self) -> CoordinateLSTM:
    return CoordinateLSTM(hidden=self.hidden, layers=self.layers, network=self.network)

  def init(self, rng: jax.Array) -> Params:
    """Teacher parameters; independent of the DLN's size (the LSTM is coordinate-wise)."""
    memory = self._zero_memory(1)
    return self._net.init(rng, memory, jnp.zeros((1, 2 + self.num_features)))["params"]

  def _zero_memory(self, n: int, dtype=jnp.float32) -> Memory:
    widths = cell_widths(self.network, self.hidden, self.layers)
    return tuple((jnp.zeros((n, w), dtype), jnp.zeros((n, w), dtype)) for w in widths)

  def init_state(self, dln_params: Params) -> Memory:
    """Zero LSTM memory for every coordinate of `dln_params`."""
    flat, _ = ravel_pytree(dln_params)
    return self._zero_memory(flat.size, flat.dtype)

  def _inputs(self, g_flat: jax.Array, features: jax.Array | None) -> jax.Array:
    x = preprocess_gradient(g_flat, self.preprocess_p)
    if self.num_features:
      if features is None or features.shape != (self.num_features,):
        raise ValueError(
          f"this teacher takes {self.num_features} student-state features per step, got "
          f"{None if features is None else features.shape}; pass them or build it with "
          "num_features=0"
        )
      x = jnp.concatenate([x, jnp.broadcast_to(features, (g_flat.size, self.num_features))], -1)
    return x

  def step_flat(
    self, theta: Params, memory: Memory, g_flat: jax.Array, features: jax.Array | None = None
  ) -> TeacherStep:
    """One teacher step on the flattened DLN gradient; returns flat updates and new memory."""
    g_flat = jax.lax.stop_gradient(g_flat)
    if features is not None:
      features = jax.lax.stop_gradient(features)
    memory, out = coordinate_lstm(theta, memory, self._inputs(g_flat, features), self.network)
    return TeacherStep(self.output_scale * out, memory)

  def step(
    self, theta: Params, memory: Memory, grads: Params, features: jax.Array | None = None
  ) -> tuple[Params, Memory]:
    """Updates for the DLN parameters (same pytree as `grads`) and the new memory."""
    g_flat, unravel = ravel_pytree(grads)
    result = self.step_flat(theta, memory, g_flat, features)
    return unravel(result.updates), result.memory

  def surrogate_loss(
    self,
    theta: Params,
    memory0: Memory,
    in_grads: jax.Array,
    in_features: jax.Array,
    out_grads: jax.Array,
  ) -> jax.Array:
    """Linearised validation loss of a window of M teacher steps, as a function of `theta`.

    Step j took `in_grads[j]` (and `in_features[j]`) from memory `memory0` replayed forward;
    `out_grads[j]` is the validation gradient measured at the DLN after step j. The DLN after step
    j is the window's start plus the sum of updates 0..j, so the gradient of this function is the
    truncated-BPTT teacher gradient through the DLN and the LSTM memory over the window, holding
    the student's trajectory fixed.
    """
    weights = jnp.cumsum(out_grads[::-1], axis=0)[::-1]  # sum over m >= j of out_grads[m]

    def body(memory, xs):
      g, f, w = xs
      result = self.step_flat(theta, memory, g, f if self.num_features else None)
      return result.memory, jnp.vdot(jax.lax.stop_gradient(w), result.updates)

    # Unrolled: M is small, and a rolled loop of tiny LSTM steps costs more in loop overhead than
    # in arithmetic (benchmarks/dln_parts.py).
    _, terms = jax.lax.scan(body, memory0, (in_grads, in_features, weights), unroll=True)
    return terms.sum()
