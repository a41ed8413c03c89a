"""Saving a trained LSTM teacher and loading it into a new run (`config.teacher_init`).

One msgpack file (flax.serialization) holds the teacher parameters `theta` and, as JSON, the
`teacher` config it was built from, so that a load can check that the run builds the same network.
The keys of `TRAINING_KEYS` only steer how the teacher learns and may differ; every other key of
`config.teacher` is part of the architecture and must match.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

from l2t_jax.config import ConfigError
from l2t_jax.metrics import write_bytes_atomic
from l2t_jax.teacher import LSTMTeacher

FORMAT = "l2t_jax.teacher/1"
TRAINING_KEYS = ("learning_rate", "grad_clip", "gradient")  # how it learns, not what it computes
# Architecture keys added after files were first written, with the value those files were built
# with: a file without the key holds a teacher of that value.
LATER_KEYS = {"network": "lstm_readout"}


def architecture(teacher_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keys of `config.teacher` that define the teacher's network, as plain JSON values."""
  cfg = json.loads(ml_collections.ConfigDict(teacher_cfg).to_json())
  return {k: v for k, v in sorted(cfg.items()) if k not in TRAINING_KEYS}


def save_teacher(path: str, theta: Any, teacher_cfg: ml_collections.ConfigDict) -> None:
  """Writes `theta` and the architecture to `path` atomically (a temporary file, then a rename)."""
  params = flax.serialization.to_state_dict(jax.device_get(theta))
  blob = flax.serialization.msgpack_serialize(
    {"format": FORMAT, "architecture": json.dumps(architecture(teacher_cfg)), "params": params}
  )
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  write_bytes_atomic(path, blob)


def load_teacher(path: str, teacher_cfg: ml_collections.ConfigDict, teacher: LSTMTeacher) -> Any:
  """The `theta` saved at `path`, for `teacher` (the network `teacher_cfg` builds); ConfigError if
  the file is missing, unreadable, or holds a teacher whose architecture differs."""
  if not os.path.exists(path):
    raise ConfigError(
      f"teacher_init='{path}': no such file. Point it at the teacher.msgpack that an l2t_dln run "
      "with a workdir writes (WORKDIR/teacher.msgpack), or set teacher_init='' for a random "
      "teacher"
    )
  try:
    with open(path, "rb") as f:
      saved = flax.serialization.msgpack_restore(f.read())
    if saved.get("format") != FORMAT:
      raise ValueError(f"format {saved.get('format')!r}, expected {FORMAT!r}")
    saved_arch = {
      k: v
      for k, v in {**LATER_KEYS, **json.loads(saved["architecture"])}.items()
      if k not in TRAINING_KEYS
    }  # (files of before a key became a training key)
    params = saved["params"]
  except Exception as e:  # noqa: BLE001 (any unreadable file gets the same advice)
    raise ConfigError(
      f"teacher_init='{path}' is not a teacher file written by "
      f"l2t_jax.teacher_io.save_teacher ({e}); train a teacher again"
    ) from e
  wanted = architecture(teacher_cfg)
  differing = sorted(k for k in set(saved_arch) | set(wanted) if saved_arch.get(k) != wanted.get(k))
  if differing:
    pairs = ", ".join(
      f"teacher.{k}: file {saved_arch.get(k, '(absent)')!r} vs config {wanted.get(k, '(absent)')!r}"
      for k in differing
    )
    raise ConfigError(
      f"teacher_init='{path}' holds a teacher of another architecture ({pairs}); "
      "set those config keys to the file's values or train a new teacher"
    )
  return _matching(params, teacher, path)


def _matching(params: Any, teacher: LSTMTeacher, path: str) -> Any:
  """`params` in the pytree structure, shapes and dtypes of a freshly built teacher's."""
  target = jax.eval_shape(teacher.init, jax.random.PRNGKey(0))
  try:
    theta = flax.serialization.from_state_dict(target, params)
  except (KeyError, ValueError) as e:
    raise ConfigError(
      f"teacher_init='{path}': its parameters do not fit the teacher that "
      f"config.teacher builds ({e}); train a new teacher"
    ) from e
  problems = []

  def convert(t, x):
    x = np.asarray(x)
    if x.shape != t.shape:
      problems.append(f"{x.shape} where {t.shape} is expected")
    return x.astype(t.dtype)

  theta = jax.tree_util.tree_map(convert, target, theta)
  if problems:
    raise ConfigError(
      f"teacher_init='{path}': parameter shapes {'; '.join(problems)}; train a new teacher"
    )
  return theta
