"""MNIST-1D (Greydanus 2020), generated locally from the `mnist1d` package: no download.

A generation takes seconds of scipy interpolation (and importing the package, with its scipy and
matplotlib, more), so each generation is kept on disk once made and read back by later processes:
under `$L2T_JAX_CACHE_DIR/mnist1d`, else `~/.cache/l2t_jax/mnist1d`, keyed by the generator seed
and the package's version, written atomically. An unreadable or damaged file is generated anew;
a cache that cannot be written is skipped (the data is then generated every time).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import random
import tempfile
import zipfile

import numpy as np

NUM_CLASSES = 10
CACHE_ENV = "L2T_JAX_CACHE_DIR"
_FORMAT = 1  # bump when what is stored changes
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def package_seed() -> int:
  """The generator seed of the package's defaults (42): the canonical dataset."""
  from mnist1d.data import get_dataset_args

  return get_dataset_args().seed


def load(seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """The dataset of the package's defaults (4000 train, 1000 test, 40 features) generated with
  `seed` (None: the package's own, i.e. the canonical dataset). Another seed draws other examples
  of the same templates and transformations: a new generation of the same problem. Read from the
  disk cache when it holds this generation (see the module's docstring)."""
  return _load(package_seed() if seed is None else int(seed))


def cache_path(seed: int) -> str:
  """Where the generation of `seed` is kept on disk."""
  root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "l2t_jax")
  version = importlib.metadata.version("mnist1d")
  return os.path.join(root, "mnist1d", f"mnist1d-{version}-seed{seed}-v{_FORMAT}.npz")


@functools.lru_cache(maxsize=4)
def _load(seed: int):
  path = cache_path(seed)
  try:
    with np.load(path) as f:
      arrays = tuple(f[name] for name in _ARRAYS)
  except (OSError, KeyError, ValueError, zipfile.BadZipFile):
    arrays = generate(seed)[:4]
    _write(path, arrays)
  x_train, y_train, x_test, y_test = arrays
  return x_train, y_train, x_test, y_test, NUM_CLASSES


def _write(path: str, arrays) -> None:
  tmp = None
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **dict(zip(_ARRAYS, arrays)))
    os.replace(tmp, path)
    tmp = None
  except OSError:
    pass  # a read-only or full disk: generate again next time
  finally:
    if tmp is not None:
      with contextlib.suppress(OSError):
        os.remove(tmp)


def generate(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """One generation, made afresh (no cache). The generator seeds numpy's and Python's global
  RNGs; their states are restored afterwards so that loading data never changes anyone else's
  random numbers."""
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
