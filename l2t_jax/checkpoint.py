"""Orbax checkpoints of a run, so that a killed or preempted run resumes to the same result.

A checkpoint holds the whole `TrainState` (student, its optimizer state and BatchNorm statistics,
DLN, teacher and its optimizer state, the teacher's LSTM memory and window, counters) and, as
JSON, the driver's position: the student step (which fixes the data order and the augmentation
keys together with the seed: the run's only randomness), the length of `metrics.jsonl` at that
step, and the training metrics gathered since the last log line. Orbax writes each checkpoint to a
temporary directory and renames it when complete, so a run killed mid-save leaves the previous
checkpoint intact. `orbax.checkpoint` is imported only when a run checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import jax
import ml_collections
import numpy as np

from l2t_jax.config import ConfigError, _flatten

# Keys that may differ between a run and its resumption without changing its results.
RESUMABLE_CHANGES = ("checkpoint", "parallel")


def _leaf_name(i: int) -> str:
  return f"leaf_{i:05d}"


class Checkpointer:
  """`save(step, state, meta)` and `restore(template) -> (state, meta)` in `workdir/checkpoints`."""

  def __init__(self, workdir: str, cfg: ml_collections.ConfigDict):
    import orbax.checkpoint as ocp
    self._ocp = ocp
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=cfg.keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves host copies of `state`'s leaves and `meta` (JSON); returns once the arrays are copied
    (the write finishes in the background; `close` waits for it)."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]
    empty = [i for i, x in enumerate(leaves) if x.size == 0]
    arrays = {_leaf_name(i): x for i, x in enumerate(leaves) if x.size}
    meta = {**meta, "step": step, "num_leaves": len(leaves), "empty_leaves": empty}
    ocp = self._ocp
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, template: Any) -> tuple[Any, dict]:
    """The latest checkpoint, as a pytree shaped like `template` (numpy leaves), and its meta."""
    step = self.latest_step()
    ocp = self._ocp
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    meta, arrays = restored.meta, restored.state
    like, treedef = jax.tree_util.tree_flatten(template)
    if meta["num_leaves"] != len(like):
      raise ConfigError(f"the checkpoint at step {step} in {self.directory} holds "
                        f"{meta['num_leaves']} arrays but this config's state has {len(like)}: it "
                        "is another kind of run; use a new --workdir")
    leaves = []
    for i, t in enumerate(like):
      x = np.zeros(np.shape(t), t.dtype) if i in meta["empty_leaves"] else arrays[_leaf_name(i)]
      if x.shape != np.shape(t) or x.dtype != t.dtype:
        raise ConfigError(f"the checkpoint at step {step} in {self.directory} does not fit this "
                          f"config's state (array {i}: {x.shape} {x.dtype}, expected "
                          f"{np.shape(t)} {t.dtype}); use a new --workdir")
      leaves.append(x)
    return jax.tree_util.tree_unflatten(treedef, leaves), meta

  def close(self) -> None:
    """Waits for a save in progress to be complete on disk."""
    self._manager.wait_until_finished()
    self._manager.close()


def _without_resumable(cfg: dict) -> dict:
  return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES}


def check_same_run(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume the run in `workdir` with a config that would change its results."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    before = _without_resumable(json.load(f))
  now = _without_resumable(json.loads(config.to_json()))
  if before != now:
    flat_before, flat_now = _flatten(before), _flatten(now)
    diffs = [f"{k}: {flat_before.get(k)!r} -> {flat_now.get(k)!r}"
             for k in sorted(set(flat_before) | set(flat_now)) if flat_before.get(k) != flat_now.get(k)]
    raise ConfigError(f"{workdir} holds checkpoints of a run with another config ({'; '.join(diffs)}); "
                      "resume it with its own config, or start this one in a new --workdir")


class StopRequest:
  """While active, SIGTERM sets `requested` instead of killing the process, so that the training
  loop can save a checkpoint between two cycles and stop. Only the main thread can take signals;
  elsewhere this does nothing."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
