"""The three splits of a classification dataset, and how they are made from the raw data.

Validation is carved from the end of the training split (whose order is fixed by the source), never
from the test split. Label noise, when asked for, touches the training split only.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if len(self.x) != len(self.y):
      raise ValueError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

  def __len__(self) -> int:
    return len(self.y)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  val: Split
  test: Split
  num_classes: int

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])


def carve_validation(x: np.ndarray, y: np.ndarray, val_size: int) -> tuple[Split, Split]:
  """Splits the last `val_size` examples of the training data off as validation."""
  if val_size >= len(y):
    raise ValueError(
        f"data.val_size={val_size} leaves no training data: the training split has {len(y)} "
        "examples; choose a smaller data.val_size")
  cut = len(y) - val_size
  return Split(x[:cut], y[:cut]), Split(x[cut:], y[cut:])


def symmetric_label_noise(y: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
  """Replaces a `rate` fraction of labels by a uniformly drawn *different* class."""
  if rate <= 0:
    return y
  rng = np.random.default_rng([seed, 0x4E015E])
  flip = rng.random(len(y)) < rate
  shift = rng.integers(1, num_classes, size=len(y))
  noisy = np.where(flip, (y + shift) % num_classes, y)
  return noisy.astype(y.dtype)


def make_splits(name: str, x_train, y_train, x_test, y_test, num_classes: int,
                data_cfg: ml_collections.ConfigDict, seed: int) -> Dataset:
  """Applies the project's rules (validation carve-out, label noise, train+val) to raw arrays."""
  train, val = carve_validation(np.asarray(x_train), np.asarray(y_train), data_cfg.val_size)
  if data_cfg.use_val_for_training:
    train = Split(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
  noisy = symmetric_label_noise(train.y, data_cfg.label_noise, num_classes, seed)
  return Dataset(name=name, train=Split(train.x, noisy), val=val,
                 test=Split(np.asarray(x_test), np.asarray(y_test)), num_classes=num_classes)


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """The dataset named by `config.data.name`, split by the project's rules."""
  name = config.data.name
  if name == "mnist1d":
    from l2t_jax.data import mnist1d
    raw = mnist1d.load()
  else:
    raise ValueError(f"data.name='{name}' is not a known dataset; known: mnist1d")
  return make_splits(name, *raw, data_cfg=config.data, seed=config.seed)
