"""TFDS datasets (on tfds.testing.mock_data): splits, standardisation, and what a user is told
when a dataset or the package is missing; `import l2t_jax` stays free of optional packages."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from l2t_jax.config import default_config
from l2t_jax.data import DataError, load_dataset
from l2t_jax.data import tfds as tfds_data


def image_config(name, val_size=6):
  config = default_config()
  config.data.name, config.data.val_size = name, val_size
  if name == "fashion_mnist":  # read from Debian's IDX files unless TFDS is asked for
    config.data.source = "tfds"
  return config


@pytest.mark.parametrize(
  "name,shape,classes",
  [
    ("mnist", (28, 28, 1), 10),
    ("fashion_mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("cifar100", (32, 32, 3), 100),
  ],
)
def test_tfds_splits_carve_validation_from_train_and_standardise_with_train_statistics(
  name, shape, classes
):
  with tfds.testing.mock_data(num_examples=20):
    x, y, x_test, y_test, num_classes = tfds_data.load(name)
    ds = load_dataset(image_config(name))
  assert x.dtype == np.uint8 and x.shape == (20, *shape) and num_classes == classes
  assert (len(ds.train), len(ds.val), len(ds.test)) == (14, 6, 20)
  assert ds.train.x.dtype == np.float32 and ds.input_shape == shape and ds.is_image
  np.testing.assert_array_equal(ds.val.y, y[-6:])  # the last val_size training examples
  np.testing.assert_array_equal(ds.train.y, y[:-6])
  np.testing.assert_allclose(ds.train.x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(ds.train.x.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
  # Validation and test inputs use the training split's statistics, not their own.
  mean = x[:-6].astype(np.float64).mean(axis=(0, 1, 2))
  std = x[:-6].astype(np.float64).std(axis=(0, 1, 2))
  np.testing.assert_allclose(ds.val.x, (x[-6:] - mean) / std, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ds.test.x, (x_test - mean) / std, rtol=1e-5, atol=1e-5)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  config = image_config("cifar10")
  config.data.data_dir = str(tmp_path / "empty")
  with pytest.raises(DataError) as e:
    load_dataset(config)
  message = str(e.value)
  assert f"tfds build cifar10 --data_dir={tmp_path / 'empty'} --file_format=array_record" in message
  assert "pip install 'l2t_jax[tfds]'" in message and "--config.data.data_dir" in message


def test_missing_package_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
  with pytest.raises(DataError, match=r"pip install 'l2t_jax\[tfds\]'"):
    load_dataset(image_config("mnist"))


def test_import_needs_neither_tensorflow_datasets_nor_mnist1d(root):
  code = (
    "import sys; import l2t_jax, l2t_jax.train, l2t_jax.cli; sys.argv = ['x'];"
    "sys.path.insert(0, 'benchmarks'); import gpu_throughput;"
    "bad = [m for m in ('tensorflow_datasets', 'mnist1d', 'tensorflow') if m in sys.modules];"
    "assert not bad, bad"
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=root,
    env={**os.environ, "PYTHONPATH": root},
  )
  assert out.returncode == 0, out.stderr[-2000:]
