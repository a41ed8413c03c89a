"""MNIST-format (IDX) files: Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it, and
MNIST's own files where a user has them.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, then each
dimension as an int32) followed by the array; the four files of a dataset may be gzipped or not.
Every file is checked before it is used (magic number, dimensions, size, image and label counts
agree, labels in range), so that a missing, truncated or wrong file is one error naming the file
and how to get a good one.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from l2t_jax.data.errors import DataError

NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10}
DEBIAN_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
FILES = {  # split: (images, labels), without the optional .gz
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
UBYTE = 0x08  # the only element type these datasets use
GZIP_MAGIC = b"\x1f\x8b"


def how_to_get(name: str) -> str:
  """The fix for a dataset whose IDX files are missing or damaged."""
  tfds_way = (
    f"or read it through TFDS instead: --config.data.source=tfds (prepared with `tfds build {name} "
    "--file_format=array_record`; see the README)"
  )
  if name == "fashion_mnist":
    return (
      "install Debian's package (apt-get update && apt-get install -y dataset-fashion-mnist, "
      f"which puts the files in {DEBIAN_DIRS[name]}) or pass the folder holding them with "
      f"--config.data.data_dir=DIR, {tfds_way}"
    )
  return (
    "pass the folder holding MNIST's four IDX files (train-images-idx3-ubyte[.gz], ...) with "
    f"--config.data.data_dir=DIR, {tfds_way}"
  )


def default_dir(name: str) -> str:
  return DEBIAN_DIRS.get(name, "")


def find(folder: str, stem: str) -> str | None:
  """`folder/stem.gz` or `folder/stem` (also with the dots some mirrors use, `stem` with its last
  '-' a '.'), the first that exists."""
  dotted = stem[::-1].replace("-", ".", 1)[::-1]  # train-images-idx3-ubyte -> ...-idx3.ubyte
  for candidate in (stem, dotted):
    for suffix in (".gz", ""):
      path = os.path.join(folder, candidate + suffix)
      if os.path.isfile(path):
        return path
  return None


def read(path: str, ndim: int, fix: str) -> np.ndarray:
  """The uint8 array of one IDX file with `ndim` dimensions (1: labels, 3: images)."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == GZIP_MAGIC:
      raw = gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); {fix}") from e
  header = 4 + 4 * ndim
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != UBYTE or raw[3] != ndim:
    got = raw[:4].hex() if len(raw) >= 4 else f"{len(raw)} bytes"
    raise DataError(
      f"{path} is not an IDX file of {ndim}-dimensional unsigned bytes (magic number "
      f"00 00 08 {ndim:02x} expected, found {got}); {fix}"
    )
  if len(raw) < header:
    raise DataError(f"{path} is truncated inside its header; {fix}")
  dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
  size = int(np.prod(dims))
  if len(raw) - header != size:
    raise DataError(
      f"{path} holds {len(raw) - header} bytes of data where its header {dims} promises {size} "
      f"({'truncated' if len(raw) - header < size else 'trailing bytes'}); {fix}"
    )
  return np.frombuffer(raw, np.uint8, size, header).reshape(dims)


def read_split(name: str, folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images (N, H, W, 1) uint8 and labels (N,) int32 of one split, checked against each other."""
  fix = how_to_get(name)
  paths = []
  for stem in FILES[split]:
    path = find(folder, stem)
    if path is None:
      raise DataError(
        f"{name}: {os.path.join(folder, stem)}[.gz] does not exist (data.data_dir="
        f"'{folder}'); {fix}"
      )
    paths.append(path)
  images, labels = read(paths[0], 3, fix), read(paths[1], 1, fix)
  if len(images) != len(labels):
    raise DataError(
      f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} labels: the "
      f"files are from different datasets or one is damaged; {fix}"
    )
  classes = NUM_CLASSES[name]
  if labels.size and int(labels.max()) >= classes:
    raise DataError(
      f"{paths[1]} holds label {int(labels.max())}, outside the {classes} classes of {name}; {fix}"
    )
  return images[..., None], labels.astype(np.int32)


def load(
  name: str, data_dir: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """`(x_train, y_train, x_test, y_test, num_classes)` from the IDX files in `data_dir` (empty: the
  dataset's Debian folder), in the files' order."""
  if name not in NUM_CLASSES:
    raise ValueError(f"'{name}' has no IDX reader here; known: {sorted(NUM_CLASSES)}")
  folder = os.path.expanduser(data_dir or default_dir(name))
  if not folder:
    raise DataError(f"{name}: no folder of IDX files given; {how_to_get(name)}")
  x_train, y_train = read_split(name, folder, "train")
  x_test, y_test = read_split(name, folder, "test")
  if x_train.shape[1:] != x_test.shape[1:]:
    raise DataError(
      f"{name} in {folder}: training images are {x_train.shape[1:3]} but test images "
      f"{x_test.shape[1:3]}; {how_to_get(name)}"
    )
  return x_train, y_train, x_test, y_test, NUM_CLASSES[name]


def write(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array as an IDX file (gzipped when `path` ends in .gz): for tests and for
  converting other data to this format."""
  array = np.ascontiguousarray(array, np.uint8)
  header = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
  data = header + array.tobytes()
  with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
    f.write(data)
