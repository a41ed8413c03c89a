"""scikit-learn's bundled handwritten digits (`load_digits`: 1797 8x8 images, 10 classes), read
from the files that ship with scikit-learn: no download.

The source has no test split; ours is the last `TEST_SIZE` examples of a fixed permutation, the
same on every machine. Pixels (0..16) are scaled to [0, 1] and each image is flattened to a
sequence of 64 values with one channel, shaped like MNIST-1D's (N, 40, 1), so that the MLP and the
1-D CNN take it as they are.
"""

from __future__ import annotations

import functools

import numpy as np

from l2t_jax.data.errors import DataError

NUM_CLASSES = 10
TEST_SIZE = 500
SPLIT_SEED = 0x5D161  # the permutation that fixes which examples are test; never change it
MAX_PIXEL = 16.0  # load_digits' pixel values are counts of 0..16 set bits of a 4x4 block


@functools.lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """`(x_train, y_train, x_test, y_test, num_classes)`: 1297 training and 500 test examples,
  inputs float32 (N, 64, 1) in [0, 1], labels int32."""
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise DataError(
      "data.name='digits' is read with scikit-learn, which is not installed: "
      "pip install -e '.[bench]'"
    ) from e
  d = load_digits()
  x = (d.data / MAX_PIXEL).astype(np.float32)[..., None]
  y = d.target.astype(np.int32)
  order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
  train, test = order[:-TEST_SIZE], order[-TEST_SIZE:]
  return x[train], y[train], x[test], y[test], NUM_CLASSES
