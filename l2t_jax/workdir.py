"""A run's workdir belongs to one run: a lock while the run writes, and a plan that decides, from
what the workdir holds, whether this run starts, resumes, is already finished, or is refused.

The lock is `flock(2)` on `WORKDIR/run.lock`, which holds the owner's PID and host: a second run
in the same workdir is refused with that PID, and the kernel releases the lock of a run that dies,
however it dies, so a killed run's lock is taken over without a race. A workdir holding another
run (another config, or files whose config is unknown) is refused unless the caller asks to
overwrite it; only then are that run's files deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
from typing import Iterator, NamedTuple

import ml_collections

from l2t_jax.config import ConfigError, _flatten

LOCK_FILE = "run.lock"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"  # checkpoints that failed verification, kept for inspection
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "teacher.msgpack")
TENSORBOARD_DIR = "tensorboard"  # train.tensorboard: metrics.jsonl's records as event files
# Keys (groups or dotted keys) that may differ between a run and its resumption without changing
# its results.
RESUMABLE_CHANGES = ("checkpoint", "parallel", "train.tensorboard")
OVERWRITE_HINT = "pass --overwrite (train(..., overwrite=True)) to replace it"


class WorkdirError(ConfigError):
  """A workdir that this run cannot use as it stands; the message says why and what to do."""


def os_error_text(e: OSError) -> str:
  """'No space left on device' for an OSError, without its errno and path decorations."""
  return e.strerror or str(e)


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
  """An OSError raised without a file name (a failed write or flush: a full disk) gets `path`."""
  try:
    yield
  except OSError as e:
    if e.filename is None and e.errno is not None:
      raise OSError(e.errno, e.strerror, path) from e
    raise


def config_diffs(before: dict, now: dict) -> list[str]:
  """'key: old -> new' for every key where two configs (as JSON dicts) differ, apart from the
  keys that a resumed run may change (RESUMABLE_CHANGES)."""
  flat = [
    {
      k: v
      for k, v in _flatten(c).items()
      if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)
    }
    for c in (before, now)
  ]
  return [
    f"{k}: {flat[0].get(k)!r} -> {flat[1].get(k)!r}"
    for k in sorted(set(flat[0]) | set(flat[1]))
    if flat[0].get(k) != flat[1].get(k)
  ]


class Lock:
  """`with Lock(workdir):` holds the workdir's lock (creating the workdir), or raises
  WorkdirError naming the process that holds it. `previous_owner` is the PID line a run that
  died left behind (empty after a clean end)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self.previous_owner = ""
    self._fd: int | None = None

  def __enter__(self) -> "Lock":
    try:
      os.makedirs(self.workdir, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except (FileExistsError, NotADirectoryError) as e:
      raise WorkdirError(
        f"--workdir={self.workdir} is not a directory ({os_error_text(e)}: "
        f"{e.filename}); choose a directory for the run"
      ) from e
    except OSError as e:
      raise WorkdirError(
        f"cannot write in --workdir={self.workdir} ({os_error_text(e)}); "
        "choose a writable directory"
      ) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      owner = os.pread(fd, 256, 0).decode(errors="replace").strip() or "a process"
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
        raise WorkdirError(
          f"--workdir={self.workdir} is in use by another run ({owner}, see "
          f"{self.path}); wait for it to end or stop it, or use another "
          "--workdir"
        ) from e
      raise WorkdirError(
        f"cannot lock --workdir={self.workdir} ({os_error_text(e)}): its "
        "filesystem does not support flock; use a local or NFS directory"
      ) from e
    self._fd = fd
    try:
      self.previous_owner = os.pread(fd, 256, 0).decode(errors="replace").strip()
      owner = f"PID {os.getpid()} on {socket.gethostname()}\n".encode()
      with naming(self.path):
        os.pwrite(fd, owner, 0)
        os.ftruncate(fd, len(owner))
    except BaseException:
      self.__exit__()
      raise
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      fd, self._fd = self._fd, None
      with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # a clean end leaves no owner behind
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)


def _read_json(path: str) -> dict | None:
  """The JSON object in `path`; None when it is missing or unreadable."""
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, ValueError):
    return None
  return obj if isinstance(obj, dict) else None


class PriorRun(NamedTuple):
  """What a workdir holds of an earlier run."""

  files: tuple[str, ...]  # its run files (RUN_FILES, and CHECKPOINT_DIR when it holds any)
  config: dict | None  # config.json, when present and readable
  summary: dict | None  # summary.json: the run finished (or diverged)
  checkpoints: bool  # checkpoints/ holds at least one complete step


def inspect(workdir: str) -> PriorRun:
  files = tuple(f for f in RUN_FILES if os.path.exists(os.path.join(workdir, f)))
  ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
  steps = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
  return PriorRun(
    files + ((CHECKPOINT_DIR,) if steps else ()),
    _read_json(os.path.join(workdir, "config.json")),
    _read_json(os.path.join(workdir, "summary.json")),
    bool(steps),
  )


def plan(workdir: str, prior: PriorRun, config: ml_collections.ConfigDict, overwrite: bool) -> str:
  """What a run of `config` does in `workdir`: 'new' (it holds no run), 'overwrite' (it holds one,
  and the caller asked to replace it), 'restart' (this config's run, unfinished, without
  checkpoints: it starts again), 'resume' (checkpoints, and this config takes them: the
  checkpoint's own config is compared when it is restored), 'finished' (this config's run ended);
  raises WorkdirError when it holds another run."""
  if not prior.files:
    return "new"
  if overwrite:
    return "overwrite"
  diffs = config_diffs(prior.config, json.loads(config.to_json())) if prior.config else None
  if diffs == [] and prior.summary is not None:
    return "finished"
  if prior.checkpoints and config.checkpoint.every:
    return "resume"
  if diffs is None:
    raise WorkdirError(
      f"{workdir} holds another run's files ({', '.join(prior.files)}) and no "
      f"readable config.json to tell which; use a new --workdir, or "
      f"{OVERWRITE_HINT}"
    )
  if diffs:
    raise WorkdirError(
      f"{workdir} holds another run ({'; '.join(diffs)}); use a new --workdir, or {OVERWRITE_HINT}"
    )
  if prior.checkpoints:
    every = prior.config.get("checkpoint", {}).get("every")
    raise WorkdirError(
      f"{workdir} holds checkpoints of this run, which resume only with "
      f"checkpoints on: pass --config.checkpoint.every={every}, or "
      f"{OVERWRITE_HINT} and start again"
    )
  return "restart"


def clear(workdir: str) -> None:
  """Deletes an earlier run's files (never the lock, nor files that are not a run's)."""
  for name in RUN_FILES:
    for path in (os.path.join(workdir, name), os.path.join(workdir, name + ".tmp")):
      if os.path.lexists(path):
        os.remove(path)
  for name in (CHECKPOINT_DIR, DAMAGED_DIR, TENSORBOARD_DIR):
    if os.path.isdir(os.path.join(workdir, name)):
      shutil.rmtree(os.path.join(workdir, name))
