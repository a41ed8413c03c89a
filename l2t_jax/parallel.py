"""Data parallelism: the cycle of a method on every device, the global batch split over them.

The state and the data splits are replicated; the batch indices of a cycle are split along the
batch axis; inside the cycle (`jax.shard_map`, which `jax.pmap` is built on since JAX 0.8) every
device gathers and trains on its slice, and `l2t_jax.unroll` averages student gradients, BatchNorm
statistics, step statistics, validation results and hypergradients over the device axis with
`lax.pmean`. The state stays identical on every device, and the run equals the one-device run on
the same global batch up to float rounding. Multi-host: `jax.distributed.initialize()` first
(`parallel.distributed`); the device axis then spans every host's devices, each host computes the
same global batch indices and feeds its own devices' slices.

On one device (one process) this is plain `jax.jit`, with no axis and no collectives.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"
# `train.fast_compile`: LLVM (CPU) and the GPU backend at their lowest optimisation level
FAST_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

_initialized = False


def initialize(cfg: ml_collections.ConfigDict) -> None:
  """Joins the multi-host run when `parallel.distributed` is set (once per process)."""
  global _initialized
  if not cfg.distributed or _initialized:
    return
  jax.distributed.initialize(
    coordinator_address=cfg.coordinator_address or None,
    num_processes=cfg.num_processes or None,
    process_id=cfg.process_id if cfg.process_id >= 0 else None,
  )
  _initialized = True


def select_devices(cfg: ml_collections.ConfigDict) -> list:
  """The devices a run uses: every device of every host when distributed, else the first
  `parallel.devices` local ones (0: all)."""
  if cfg.distributed:
    return jax.devices()
  local = jax.local_devices()
  if cfg.devices > len(local):
    raise ValueError(
      f"parallel.devices={cfg.devices} but this host has {len(local)} "
      f"{local[0].platform} device(s); lower it (0 uses all)"
    )
  return local[: cfg.devices or len(local)]


class DataParallel:
  """Places arrays and compiles cycles for a set of devices (see the module docstring)."""

  def __init__(self, devices: list):
    self.devices = list(devices)
    self.size = len(self.devices)
    self.axis_name = AXIS if self.size > 1 else None
    self.mesh = Mesh(np.array(self.devices), (AXIS,)) if self.axis_name else None

  def _put(self, x: Any, spec: P) -> jax.Array:
    if not self.axis_name:
      return jax.device_put(x, self.devices[0])
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(self.mesh, spec), lambda i: x[i])

  def replicate(self, tree: Any) -> Any:
    """Every leaf on every device (the state, the data splits)."""
    return jax.tree_util.tree_map(lambda x: self._put(x, P()), tree)

  def put_indices(self, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """A cycle's global batch indices, (steps, batch) and (val_batch,), split over the batch axis."""
    return self._put(train_idx, P(None, AXIS)), self._put(val_idx, P(AXIS))

  def local(self, tree: Any) -> Any:
    """This host's first copy of replicated arrays, for evaluation and checkpoints."""
    if not self.axis_name:
      return tree
    return jax.tree_util.tree_map(lambda x: x.addressable_data(0), tree)

  def compile_cycle(self, cycle: Callable, fast_compile: bool = False) -> Callable:
    """`cycle(state, data, train_idx, val_idx) -> (state, metrics)`, jitted, the state donated;
    with `fast_compile`, compiled with `FAST_COMPILER_OPTIONS` (quicker to compile, slower)."""
    if self.axis_name:
      # check_vma=False gives pmap's semantics: a gradient taken on one device is that device's
      # own (the replicated parameters are not summed over devices behind our back), so the
      # explicit `lax.pmean`s in `l2t_jax.unroll` are the only averaging.
      cycle = jax.shard_map(
        cycle,
        mesh=self.mesh,
        in_specs=(P(), P(), P(None, AXIS), P(AXIS)),
        out_specs=(P(), P()),
        check_vma=False,
      )
    options = FAST_COMPILER_OPTIONS if fast_compile else None
    return jax.jit(cycle, donate_argnums=(0,), compiler_options=options)

  def check_divides(self, what: str, size: int) -> str | None:
    """A problem message when a global batch of `size` does not split evenly over the devices."""
    if size % self.size:
      return (
        f"{what}={size} does not split over {self.size} devices: make it a multiple of "
        f"{self.size} or set parallel.devices"
      )
    return None


def prefetch(items: Iterable, size: int = 2) -> Iterator:
  """Runs `size` items ahead of the consumer, so that their (asynchronous) transfers to the
  devices are under way while the devices work on the current cycle."""
  queue: collections.deque = collections.deque()
  for item in items:
    queue.append(item)
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
