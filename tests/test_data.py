"""Splits, label noise and batch order follow their rules."""

import os
import sys

import numpy as np
import pytest

from conftest import small_config
from l2t_jax.config import validate
from l2t_jax.data import batch_indices, load_dataset
from l2t_jax.data.dataset import label_noise
from l2t_jax.data import mnist1d


def test_mnist1d_splits_carve_validation_from_train():
  ds = load_dataset(small_config())
  x, y, x_test, y_test, c = mnist1d.load()
  assert (len(ds.train), len(ds.val), len(ds.test)) == (3500, 500, 1000)
  assert ds.input_shape == (40, 1) and ds.num_classes == c == 10
  np.testing.assert_array_equal(ds.val.x, x[-500:])
  np.testing.assert_array_equal(ds.train.x, x[:-500])
  np.testing.assert_array_equal(ds.test.x, x_test)


def test_loading_does_not_touch_global_random_state():
  np.random.seed(123)
  expected = np.random.rand()
  np.random.seed(123)
  mnist1d.generate(7)
  assert np.random.rand() == expected


def test_a_generation_is_kept_on_disk_read_back_and_made_anew_when_damaged(tmp_path, monkeypatch):
  monkeypatch.setenv(mnist1d.CACHE_ENV, str(tmp_path))
  path = mnist1d.cache_path(3)
  assert path.startswith(str(tmp_path)) and not os.path.exists(path)
  fresh = mnist1d.generate(3)
  mnist1d._load.cache_clear()
  first = mnist1d.load(3)
  assert os.path.exists(path)
  mnist1d._load.cache_clear()
  calls = []
  monkeypatch.setattr(mnist1d, "generate", lambda seed: calls.append(seed))
  again = mnist1d.load(3)  # read from the file, not generated
  assert calls == []
  for a, b, c in zip(fresh, first, again, strict=True):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  with open(path, "wb") as f:
    f.write(b"not an npz file")
  monkeypatch.undo()
  monkeypatch.setenv(mnist1d.CACHE_ENV, str(tmp_path))
  mnist1d._load.cache_clear()
  repaired = mnist1d.load(3)  # a damaged file is generated anew and rewritten
  np.testing.assert_array_equal(repaired[0], fresh[0])
  mnist1d._load.cache_clear()
  with np.load(path) as f:
    np.testing.assert_array_equal(f["x_train"], fresh[0])
  assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []


def test_label_noise_touches_train_only_and_always_changes_the_class():
  config = small_config()
  config.data.label_noise = 0.4
  noisy = load_dataset(config)
  clean = load_dataset(small_config())
  changed = noisy.train.y != clean.train.y
  assert 0.37 < changed.mean() < 0.43
  np.testing.assert_array_equal(noisy.val.y, clean.val.y)
  np.testing.assert_array_equal(noisy.test.y, clean.test.y)
  y = np.arange(20000) % 10
  noisy_y = label_noise(y, 0.3, 10, seed=0)
  assert 0.29 < (noisy_y != y).mean() < 0.31  # a flip never lands on the true class
  assert noisy_y.min() == 0 and noisy_y.max() == 9


def test_train_plus_val():
  config = small_config("ce")
  config.data.use_val_for_training = True
  ds = load_dataset(config)
  assert len(ds.train) == 4000 and len(ds.val) == 500


def test_batch_order_is_a_function_of_seed_and_step():
  a = batch_indices(0, 0, 100, 32, 0, 10)
  b = batch_indices(0, 0, 100, 32, 4, 6)
  np.testing.assert_array_equal(a[4:], b)  # resuming at step 4 gives the same batches
  assert len(set(a[:3].ravel())) == 96  # an epoch never repeats an example
  assert not np.array_equal(a[:3], a[3:6])  # each epoch is reshuffled
  assert not np.array_equal(a, batch_indices(1, 0, 100, 32, 0, 10))
  with pytest.raises(ValueError, match="exceeds"):
    batch_indices(0, 0, 10, 32, 0, 1)


def test_the_default_generator_seed_is_the_packages_canonical_dataset():
  assert small_config().data.mnist1d_seed == mnist1d.package_seed()
  x, *_ = mnist1d.load()
  np.testing.assert_array_equal(mnist1d.load(mnist1d.package_seed())[0], x)


def test_another_generator_seed_is_another_dataset_of_the_same_shapes():
  config = small_config()
  config.data.mnist1d_seed = 0
  ds = load_dataset(config)
  canonical = load_dataset(small_config())
  assert (len(ds.train), len(ds.val), len(ds.test)) == (3500, 500, 1000)
  assert ds.input_shape == (40, 1) and ds.num_classes == 10
  assert not np.allclose(ds.train.x, canonical.train.x)
  assert set(np.unique(ds.train.y)) == set(range(10))
  x_fresh, y_fresh, *_ = mnist1d.generate(0)  # generated afresh, not read from a cache
  np.testing.assert_array_equal(x_fresh[: len(ds.train)], ds.train.x)
  np.testing.assert_array_equal(y_fresh[: len(ds.train)], ds.train.y)


def test_train_size_keeps_the_first_examples_after_the_carve_out():
  config = small_config()
  config.data.train_size = 1000
  ds = load_dataset(config)
  full = load_dataset(small_config())
  assert (len(ds.train), len(ds.val), len(ds.test)) == (1000, 500, 1000)
  np.testing.assert_array_equal(ds.train.x, full.train.x[:1000])
  np.testing.assert_array_equal(ds.val.x, full.val.x)
  config.data.train_size = 3501
  with pytest.raises(ValueError, match=r"data.train_size=3501 .* than the 3500 left"):
    load_dataset(config)


def test_digits_splits_are_fixed_disjoint_and_scaled():
  pytest.importorskip("sklearn")
  from sklearn.datasets import load_digits
  from l2t_jax.data import digits

  config = small_config()
  config.data.name, config.data.val_size = "digits", 300
  validate(config)
  ds = load_dataset(config)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (997, 300, 500)
  assert ds.input_shape == (64, 1) and ds.num_classes == 10
  assert ds.train.x.dtype == np.float32 and ds.train.x.min() == 0.0 and ds.train.x.max() == 1.0
  images = {(r / 16).astype(np.float32).tobytes() for r in load_digits().data}
  assert len(images) == 1797  # no two images alike: an image names its example
  rows = [{r.tobytes() for r in s.x} for s in (ds.train, ds.val, ds.test)]
  assert not (rows[0] & rows[2]) and not (rows[1] & rows[2]) and not (rows[0] & rows[1])
  assert rows[0] | rows[1] | rows[2] == images
  digits.load.cache_clear()
  np.testing.assert_array_equal(load_dataset(config).test.x, ds.test.x)


def test_digits_without_scikit_learn_says_how_to_install_it(monkeypatch):
  from l2t_jax.data import DataError, digits

  digits.load.cache_clear()
  monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if not installed
  with pytest.raises(DataError, match=r"pip install -e '\.\[bench\]'"):
    digits.load()
  digits.load.cache_clear()
