"""Data parallelism: the cycle of a method on every device, the global batch split over them.

The state and the data splits are replicated; the batch indices of a cycle are split along the
batch axis; inside the cycle (`jax.shard_map`, which `jax.pmap` is built on since JAX 0.8) every
device gathers and trains on its slice, and `l2t_jax.unroll` averages student gradients, BatchNorm
statistics, step statistics, validation results and hypergradients over the device axis with
`lax.pmean`. The state stays identical on every device, and the run equals the one-device run on
the same global batch up to float rounding.

Several processes (hosts): `initialize` joins them (`parallel.distributed`) before any other JAX
call; the device axis then spans every process's devices. Every process computes the same global
batch indices, but reads and places only its own devices' share of each cycle's batch
(`DataParallel.put_cycle`): the cycle gets each device's rows as a batch sharded over the axis,
and indices into it. Process 0 speaks for the run (the workdir, the checkpoints); what the others
need from it travels with `broadcast_json` and `broadcast_tree`, and a SIGTERM to any process
stops all of them at the same cycle (`preempted`). On a CPU the processes' collectives go through
gloo (set here).

On one device (one process) this is plain `jax.jit`, with no axis and no collectives.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"
# `train.fast_compile`: LLVM (CPU) and the GPU backend at their lowest optimisation level
FAST_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

_initialized = False
# The environment variables a launcher without cluster detection can set instead of the flags
# (JAX itself reads JAX_COORDINATOR_ADDRESS).
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# How long the run waits for a process that stopped sending heartbeats (JAX's default is 100 s):
# then JAX's runtime ends every process of the run (`l2t-train` reports it in one line).
HEARTBEAT_TIMEOUT_S = 30


def _env_int(name: str) -> int | None:
  value = os.environ.get(name, "")
  return int(value) if value.strip() else None


def initialize(cfg: ml_collections.ConfigDict) -> None:
  """Joins the multi-process run when `parallel.distributed` is set (once per process; before any
  other JAX call). The coordinator, the process count and this process's id come from the config,
  else from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, else from the cluster
  (SLURM, Open MPI, a TPU pod: `jax.distributed` detects them). On a CPU the cross-process
  collectives use gloo."""
  global _initialized
  if not cfg.distributed or _initialized:
    return
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  num_processes = cfg.num_processes or _env_int(ENV_NUM_PROCESSES)
  process_id = cfg.process_id if cfg.process_id >= 0 else _env_int(ENV_PROCESS_ID)
  try:
    jax.distributed.initialize(
      coordinator_address=cfg.coordinator_address or None,
      num_processes=num_processes,
      process_id=process_id,
      heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
    )
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"parallel.distributed=True could not join the run ({e}); outside SLURM, Open MPI and TPU "
      "pods pass --config.parallel.coordinator_address=HOST:PORT "
      "--config.parallel.num_processes=N --config.parallel.process_id=I (or set "
      f"JAX_COORDINATOR_ADDRESS, {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID})"
    ) from e
  except RuntimeError as e:  # JAX was used before: too late to join
    raise ValueError(
      f"parallel.distributed=True: {e}; in your own program, call l2t_jax.train.train (or "
      "l2t_jax.parallel.initialize(config.parallel)) before any other JAX call"
    ) from e
  _initialized = True


def is_lead() -> bool:
  """Whether this process speaks for the run (writes its files): process 0."""
  return jax.process_index() == 0


def broadcast_tree(tree: Any) -> Any:
  """Process 0's values of a pytree of arrays (every process passes one of the same shapes)."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils

  return jax.tree_util.tree_map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def broadcast_json(obj: Any) -> Any:
  """Process 0's JSON-serialisable `obj` on every process (the others pass anything)."""
  if jax.process_count() == 1:
    return obj
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if is_lead() else np.zeros(0, np.uint8)
  size = int(broadcast_tree(np.int32(data.size)))
  padded = np.zeros(-(-max(size, 1) // 4096) * 4096, np.uint8)  # few shapes, few compilations
  padded[: data.size] = data
  return json.loads(bytes(broadcast_tree(padded)[:size]).decode())


def preempted(step: int) -> bool:
  """Multi-process: whether every process is to stop after `step` (called after every cycle, with
  increasing steps): a SIGTERM to any of them is shared through JAX's preemption service, which
  picks a step they all reach. One process: always False (the driver takes SIGTERM itself)."""
  if jax.process_count() == 1:
    return False
  from jax.experimental import multihost_utils

  return multihost_utils.reached_preemption_sync_point(step)


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

  def put_cycle(
    self, arrays: dict, train_idx: np.ndarray, val_idx: np.ndarray
  ) -> tuple[dict, jax.Array, jax.Array]:
    """A cycle's batch read per device, for a cycle that takes `(data, train_idx, val_idx)` as
    `data_arrays` and `put_indices` give them: every device gets only its own rows of the global
    batch (`train_idx` (steps, batch), `val_idx` (val_batch,), indices into `arrays`' splits),
    read on the host by the process that owns it, as splits sharded over the batch axis; and
    indices into those rows, so that the cycle's gather takes exactly the rows that the global
    indices name, in their order. A process reads nothing of the other processes' shares."""
    steps, batch = train_idx.shape
    b, vb = batch // self.size, len(val_idx) // self.size
    local_train = np.arange(steps * b, dtype=np.int32).reshape(steps, b)
    positions = (
      np.tile(local_train, (1, self.size)),
      np.tile(np.arange(vb, dtype=np.int32), self.size),
    )

    def rows(key: str, device: int) -> np.ndarray:
      if key.startswith("train"):
        idx = train_idx[:, device * b : (device + 1) * b].reshape(-1)
      else:
        idx = val_idx[device * vb : (device + 1) * vb]
      return np.asarray(arrays[key][idx])

    def put(key: str) -> jax.Array:
      if not self.axis_name:
        return jax.device_put(rows(key, 0), self.devices[0])
      per_device = steps * b if key.startswith("train") else vb
      x = arrays[key]
      shape = (per_device * self.size, *np.shape(x)[1:])
      sharding = NamedSharding(self.mesh, P(AXIS))
      return jax.make_array_from_callback(
        shape, sharding, lambda i: rows(key, (i[0].start or 0) // per_device)
      )

    return {k: put(k) for k in arrays}, *self.put_indices(*positions)

  def local(self, tree: Any) -> Any:
    """This host's first copy of replicated arrays, for evaluation and checkpoints."""
    if not self.axis_name:
      return tree
    return jax.tree_util.tree_map(lambda x: x.addressable_data(0), tree)

  def compile_cycle(
    self, cycle: Callable, fast_compile: bool = False, sharded_data: bool = False
  ) -> Callable:
    """`cycle(state, data, train_idx, val_idx) -> (state, metrics)`, jitted, the state donated;
    with `fast_compile`, compiled with `FAST_COMPILER_OPTIONS` (quicker to compile, slower).
    `sharded_data`: `data` is split over the devices as `put_cycle` gives it, else replicated."""
    if self.axis_name:
      # check_vma=False gives pmap's semantics: a gradient taken on one device is that device's
      # own (the replicated parameters are not summed over devices behind our back), so the
      # explicit `lax.pmean`s in `l2t_jax.unroll` are the only averaging.
      cycle = jax.shard_map(
        cycle,
        mesh=self.mesh,
        in_specs=(P(), P(AXIS) if sharded_data else P(), P(None, AXIS), P(AXIS)),
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
