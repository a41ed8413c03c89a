"""MNIST-1D (Greydanus 2020), generated locally from the `mnist1d` package: no download."""

from __future__ import annotations

import functools
import random

import numpy as np

NUM_CLASSES = 10


def package_seed() -> int:
  """The generator seed of the package's defaults (42): the canonical dataset."""
  from mnist1d.data import get_dataset_args

  return get_dataset_args().seed


def load(seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """The dataset of the package's defaults (4000 train, 1000 test, 40 features) generated with
  `seed` (None: the package's own, i.e. the canonical dataset). Another seed draws other examples
  of the same templates and transformations: a new generation of the same problem."""
  return generate(package_seed() if seed is None else int(seed))


@functools.lru_cache(maxsize=4)
def generate(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """One generation, cached per seed. The generator seeds numpy's and Python's global RNGs; their
  states are restored afterwards so that loading data never changes anyone else's random numbers.
  """
  from mnist1d.data import get_dataset_args, make_dataset

  args = get_dataset_args()
  args.seed = seed
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    d = make_dataset(args)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  x_train = d["x"].astype(np.float32)[..., None]
  x_test = d["x_test"].astype(np.float32)[..., None]
  return x_train, d["y"].astype(np.int32), x_test, d["y_test"].astype(np.int32), NUM_CLASSES
