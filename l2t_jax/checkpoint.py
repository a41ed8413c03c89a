"""Orbax checkpoints of a run, so that a killed or preempted run resumes to the same result.

A checkpoint holds the whole `TrainState` (student, its optimizer state and BatchNorm statistics,
DLN, teacher and its optimizer state, the teacher's LSTM memory and window, counters) and, as
JSON, the driver's position: the student step (which fixes the data order and the augmentation
keys together with the seed: the run's only randomness), the length of `metrics.jsonl` at that
step, the training metrics gathered since the last log line, and the run's config. Orbax writes
each checkpoint to a temporary directory and renames it when complete, so a run killed mid-save
leaves the previous checkpoint intact.

Orbax does not check what it reads back, so every checkpoint also records a SHA-256 of each array
and of its JSON part: a restore verifies them, reports a damaged checkpoint, moves it aside (to
`WORKDIR/damaged_checkpoints`, out of the rotation, which then never counts it as one to keep)
and falls back to the previous intact one. `orbax.checkpoint` is imported only when a run
checkpoints.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import threading
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np

from l2t_jax.metrics import json_safe
from l2t_jax.workdir import CHECKPOINT_DIR, DAMAGED_DIR, OVERWRITE_HINT, WorkdirError, config_diffs


def _leaf_name(i: int) -> str:
  return f"leaf_{i:05d}"


def _array_digest(x: np.ndarray) -> str:
  x = np.ascontiguousarray(x)
  return hashlib.sha256(f"{x.dtype.str}{x.shape}".encode() + x.tobytes()).hexdigest()


def _meta_digest(meta: dict) -> str:
  rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


class DamagedCheckpoint(Exception):
  """A checkpoint that cannot be read back as it was saved."""

  @classmethod
  def unreadable(cls, e: Exception) -> "DamagedCheckpoint":
    return cls(f"unreadable: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")


# OS errors that tensorstore (orbax's writer) reports only as text, in a ValueError.
_OS_ERRORS_AS_TEXT = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS)


def sync_hosts(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


class Checkpointer:
  """`save(step, state, meta)` and `restore(template, config, log) -> (state, meta)` in
  `workdir/checkpoints`. In a multi-process run only process 0 makes one (the others get what it
  restores from it: `l2t_jax.train`), so that the workdir has a single writer."""

  def __init__(self, workdir: str, cfg: ml_collections.ConfigDict):
    import orbax.checkpoint as ocp

    self._ocp = ocp
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    # This process alone: orbax would otherwise wait for every process at its barriers.
    alone = ocp.options.MultiprocessingOptions()
    if jax.process_count() > 1:
      me = jax.process_index()
      alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
      os.makedirs(self.directory, exist_ok=True)  # orbax creates it only for all processes
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=cfg.keep,
        create=jax.process_count() == 1,
        multiprocessing_options=alone,
      ),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves host copies of `state`'s leaves and `meta` (JSON), with their checksums; returns once
    the arrays are copied (the write finishes in the background; `close` waits for it)."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]
    empty = [i for i, x in enumerate(leaves) if x.size == 0]
    arrays = {_leaf_name(i): x for i, x in enumerate(leaves) if x.size}
    meta = json_safe(
      {
        **meta,
        "step": step,
        "num_leaves": len(leaves),
        "empty_leaves": empty,
        "array_sha256": {k: _array_digest(x) for k, x in arrays.items()},
      }
    )
    meta["meta_sha256"] = _meta_digest(meta)
    ocp = self._ocp
    with self._os_errors():
      self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
        force=True,
      )

  @contextlib.contextmanager
  def _os_errors(self) -> Iterator[None]:
    """Raises the OSError (a full disk, a read-only one) behind a failed write as such."""
    try:
      yield
    except Exception as e:
      for code in _OS_ERRORS_AS_TEXT:
        if os.strerror(code) in str(e):
          raise OSError(code, os.strerror(code), self.directory) from e
      raise

  def _restore_meta(self, step: int, config: dict) -> dict:
    ocp = self._ocp
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # orbax raises many kinds on a damaged file  # noqa: BLE001
      raise DamagedCheckpoint.unreadable(e) from e
    if not isinstance(meta, dict) or "meta_sha256" not in meta:
      raise DamagedCheckpoint("it has no checksums (written by an older l2t_jax)")
    if meta["meta_sha256"] != _meta_digest(meta):
      raise DamagedCheckpoint("its JSON part does not match its checksum")
    diffs = config_diffs(meta["config"], config)
    if diffs:
      raise WorkdirError(
        f"{self.workdir} holds checkpoints of a run with another config ({'; '.join(diffs)}); "
        f"resume it with its own config, start this one in a new --workdir, or {OVERWRITE_HINT}"
      )
    return meta

  def _restore_state(self, step: int, meta: dict, template: Any) -> Any:
    ocp = self._ocp
    try:
      arrays = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
      ).state
    except Exception as e:  # noqa: BLE001
      raise DamagedCheckpoint.unreadable(e) from e
    like, treedef = jax.tree_util.tree_flatten(template)
    if meta["num_leaves"] != len(like):
      raise WorkdirError(
        f"the checkpoint at step {step} in {self.directory} holds "
        f"{meta['num_leaves']} arrays but this config's state has {len(like)}: "
        f"it is another kind of run; use a new --workdir, or {OVERWRITE_HINT}"
      )
    leaves = []
    for i, t in enumerate(like):
      if i in meta["empty_leaves"]:
        leaves.append(np.zeros(np.shape(t), t.dtype))
        continue
      x = np.asarray(arrays.get(_leaf_name(i)))
      if _array_digest(x) != meta["array_sha256"].get(_leaf_name(i)):
        raise DamagedCheckpoint(f"array {i} does not match its checksum")
      if x.shape != np.shape(t) or x.dtype != t.dtype:
        raise WorkdirError(
          f"the checkpoint at step {step} in {self.directory} does not fit this "
          f"config's state (array {i}: {x.shape} {x.dtype}, expected "
          f"{np.shape(t)} {t.dtype}); use a new --workdir, or {OVERWRITE_HINT}"
        )
      leaves.append(x)
    return jax.tree_util.tree_unflatten(treedef, leaves)

  def restore(
    self, template: Any, config: dict, log: Callable[[str], Any] = print
  ) -> tuple[Any, dict]:
    """The latest intact checkpoint, as a pytree shaped like `template` (numpy leaves), and its
    meta. Refuses (WorkdirError) a checkpoint of another `config` (a JSON dict). A damaged one is
    reported in one `log` line, moved to `WORKDIR/damaged_checkpoints`, and the previous one is
    tried; with none intact, WorkdirError lists why."""
    damaged = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        meta = self._restore_meta(step, config)
        state = self._restore_state(step, meta, template)
      except DamagedCheckpoint as e:
        damaged.append((step, str(e)))
        continue
      self._set_aside(damaged, step, log)
      return state, meta
    reasons = "; ".join(f"step {s}: {why}" for s, why in damaged) or "none is complete"
    raise WorkdirError(
      f"no intact checkpoint in {self.directory} ({reasons}); {OVERWRITE_HINT} "
      "and start the run again"
    )

  def _set_aside(
    self, damaged: list[tuple[int, str]], restored: int, log: Callable[[str], Any]
  ) -> None:
    """Moves damaged checkpoints out of the rotation; one line each."""
    if not damaged:
      return
    aside = os.path.join(self.workdir, DAMAGED_DIR)
    for step, why in damaged:
      dest = os.path.join(aside, str(step))
      os.makedirs(aside, exist_ok=True)
      if os.path.exists(dest):
        shutil.rmtree(dest)
      os.replace(os.path.join(self.directory, str(step)), dest)
      log(
        f"warning: the checkpoint at step {step} is damaged ({why}); moved to {dest}, "
        f"resuming from the one at step {restored}"
      )
    self._manager.reload()

  def close(self) -> None:
    """Waits for a save in progress to be complete on disk (once; later calls do nothing)."""
    if self._manager is not None:
      manager, self._manager = self._manager, None
      with self._os_errors():
        manager.wait_until_finished()
        manager.close()


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
