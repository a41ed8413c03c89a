"""Evaluation on whole splits, and the metrics file a run writes (one JSON object per line)."""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2t_jax.students import Student
from l2t_jax.config import ConfigError
from l2t_jax.workdir import OVERWRITE_HINT, TENSORBOARD_DIR, WorkdirError, naming

# Fields that measure the machine rather than the run; everything else is deterministic.
TIMING_KEYS = ("steps_per_second", "elapsed_seconds")


def make_evaluator(student: Student, batch_size: int):
  """`evaluate(params, model_state, x, y) -> {'accuracy', 'loss'}` over a whole split.

  Inputs are padded to a multiple of `batch_size` and masked, so one compilation serves every split.
  """

  @jax.jit
  def batch_sums(params, model_state, x, y, mask):
    logits, _ = student.apply(params, model_state, x, False)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return (jnp.sum(mask * (logits.argmax(-1) == y)), jnp.sum(mask * ce))

  def evaluate(params, model_state, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    n = len(y)
    if n == 0:
      return {"accuracy": math.nan, "loss": math.nan}
    pad = (-n) % batch_size
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    yp = np.concatenate([y, np.zeros((pad,), y.dtype)]) if pad else y
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    correct, total = 0.0, 0.0
    for i in range(0, n + pad, batch_size):
      s = slice(i, i + batch_size)
      c, n_batch = batch_sums(params, model_state, xp[s], yp[s], mask[s])
      correct, total = correct + c, total + n_batch
    correct, total = jax.device_get((correct, total))
    return {"accuracy": float(correct) / n, "loss": float(total) / n}

  return evaluate


def to_python(tree: Any) -> Any:
  """Device scalars and numpy values to plain floats/ints, for JSON."""

  def convert(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x.tolist()

  return jax.tree_util.tree_map(convert, jax.device_get(tree))


def json_safe(obj: Any) -> Any:
  """`obj` with every NaN or infinite float replaced by None: strict JSON has no NaN, and a
  diverged run's losses must not make its files unreadable."""
  if isinstance(obj, (float, np.floating)):
    return float(obj) if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  return obj


def json_dumps(obj: Any, **kwargs) -> str:
  return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


class TensorBoardWriter:
  """Records as TensorBoard scalars in `logdir`: every finite number of a record is the scalar
  `KIND/FIELD` at the record's step (`train/train_loss`, `eval/test_accuracy`, ...). Written with
  tensorboardX, which needs no TensorFlow; each record is flushed to disk."""

  def __init__(self, logdir: str):
    try:
      from tensorboardX import SummaryWriter
    except ImportError as e:
      raise ConfigError(
        "train.tensorboard=True writes event files with tensorboardX, which is "
        "not installed: pip install 'l2t_jax[tensorboard]', or set "
        "train.tensorboard=False"
      ) from e
    self._writer = SummaryWriter(logdir)

  def write(self, record: dict) -> None:
    for key, value in record.items():
      if (
        key not in ("kind", "step")
        and isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and math.isfinite(value)
      ):
        self._writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MetricsWriter:
  """Appends records to `DIR/metrics.jsonl`; each write is flushed to disk.

  `resume_at` (a length in bytes that `size()` returned earlier) continues a file from that point:
  records written after it, by a run that was killed, are dropped, since the resumed run writes
  them again. With `tensorboard`, `DIR/tensorboard` holds the same records as event files
  (`TensorBoardWriter`), rebuilt from the kept records when the file is continued, so that a
  resumed run shows each step once; `close()` ends its writer.
  """

  def __init__(
    self,
    workdir: str | None,
    append: bool = False,
    resume_at: int | None = None,
    tensorboard: bool = False,
  ):
    self.path = os.path.join(workdir, "metrics.jsonl") if workdir else None
    self.tensorboard = None
    if self.path:
      os.makedirs(workdir, exist_ok=True)
      if resume_at is not None:
        if self.size() < resume_at:
          raise WorkdirError(
            f"{self.path} is shorter than when the checkpoint was taken "
            f"({self.size()} < {resume_at} bytes): it was changed since; "
            f"restore it, or {OVERWRITE_HINT}"
          )
        with open(self.path, "a") as f:
          f.truncate(resume_at)
      elif not append and os.path.exists(self.path):
        os.remove(self.path)
      if tensorboard:
        logdir = os.path.join(workdir, TENSORBOARD_DIR)
        shutil.rmtree(logdir, ignore_errors=True)
        self.tensorboard = TensorBoardWriter(logdir)
        for record in read_metrics(workdir) if os.path.exists(self.path) else []:
          self.tensorboard.write(record)

  def size(self) -> int:
    return os.path.getsize(self.path) if self.path and os.path.exists(self.path) else 0

  def write(self, record: dict) -> None:
    if not self.path:
      return
    with naming(self.path), open(self.path, "a") as f:
      f.write(json_dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())
    if self.tensorboard:
      self.tensorboard.write(record)

  def close(self) -> None:
    if self.tensorboard:
      self.tensorboard.close()
      self.tensorboard = None


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`; WorkdirError names a line that is not JSON."""
  path = os.path.join(workdir, "metrics.jsonl")
  records = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except ValueError as e:
        raise WorkdirError(
          f"{path} line {number} is not JSON ({e}): the file was damaged; "
          f"restore it, or {OVERWRITE_HINT}"
        ) from e
  return records


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temporary file and a rename: readers see all or nothing."""
  tmp = path + ".tmp"
  with naming(tmp), open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes `obj` as strict JSON (NaN and infinities as null), all or nothing."""
  write_bytes_atomic(path, json_dumps(obj, indent=2).encode())
