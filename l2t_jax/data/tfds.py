"""Image classification datasets from TensorFlow Datasets: MNIST, Fashion-MNIST, CIFAR-10/100.

Read with `tfds.data_source` (array_record files, random access, no TensorFlow needed to read) into
in-memory uint8 arrays; the project's rules (validation carve-out, normalisation) are applied by
`l2t_jax.data.dataset`. `tensorflow_datasets` is imported only when one of these datasets is asked
for, so that `import l2t_jax` works without it.
"""

from __future__ import annotations

import numpy as np

from l2t_jax.data.errors import DataError

NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
DEFAULT_DATA_DIR = "~/tensorflow_datasets"  # TFDS's own default (or $TFDS_DATA_DIR)


def import_tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DataError(
      "the TFDS datasets (mnist, cifar10, cifar100, voc) are read with "
      "tensorflow-datasets, which is not installed: pip install 'l2t_jax[tfds]'"
    ) from e
  return tfds


def prepare_instructions(name: str, data_dir: str) -> str:
  where = (
    data_dir
    or f"{DEFAULT_DATA_DIR} (the TFDS default; choose another with --config.data.data_dir=DIR)"
  )
  target = data_dir or DEFAULT_DATA_DIR
  return (
    f"TFDS dataset '{name}' is not prepared in {where} in the array_record format that "
    "tfds.data_source reads. Prepare it once on a machine with internet access "
    "(building needs TensorFlow; reading does not):\n"
    "  pip install 'l2t_jax[tfds]' tensorflow-cpu\n"
    f"  tfds build {name} --data_dir={target} --file_format=array_record\n"
    f"then copy {target}/{name} to this machine and pass --config.data.data_dir=DIR."
  )


def source(tfds, name: str, split: str, data_dir: str):
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:  # TFDS signals a missing or unreadable dataset with several error types
    raise DataError(
      f"{prepare_instructions(name, data_dir)}\n(TFDS said: {type(e).__name__}: "
      f"{str(e).splitlines()[0] if str(e) else ''})"
    ) from e


def _to_arrays(source) -> tuple[np.ndarray, np.ndarray]:
  examples = [source[i] for i in range(len(source))]
  x = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
  y = np.asarray([e["label"] for e in examples], np.int32)
  return x, y


def load(
  name: str, data_dir: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """`(x_train, y_train, x_test, y_test, num_classes)`; images uint8 (N, H, W, C), in TFDS order."""
  if name not in NUM_CLASSES:
    raise ValueError(
      f"'{name}' is not a TFDS dataset this project reads; known: {sorted(NUM_CLASSES)}"
    )
  tfds = import_tfds()
  x_train, y_train = _to_arrays(source(tfds, name, "train", data_dir))
  x_test, y_test = _to_arrays(source(tfds, name, "test", data_dir))
  return x_train, y_train, x_test, y_test, NUM_CLASSES[name]
