"""MNIST-1D (Greydanus 2020), generated locally from the `mnist1d` package: no download."""

from __future__ import annotations

import functools
import random

import numpy as np

NUM_CLASSES = 10


@functools.lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """The canonical dataset (package defaults: 4000 train, 1000 test, 40 features, seed 42).

  The generator seeds numpy's and Python's global RNGs; their states are restored afterwards so
  that loading data never changes anyone else's random numbers.
  """
  from mnist1d.data import get_dataset_args, make_dataset
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    d = make_dataset(get_dataset_args())
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  x_train = d["x"].astype(np.float32)[..., None]
  x_test = d["x_test"].astype(np.float32)[..., None]
  return x_train, d["y"].astype(np.int32), x_test, d["y_test"].astype(np.int32), NUM_CLASSES
