"""Splits, label noise and batch order follow their rules."""

import numpy as np
import pytest

from conftest import small_config
from l2t_jax.data import batch_indices, load_dataset
from l2t_jax.data.dataset import symmetric_label_noise
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
  mnist1d.load.cache_clear()
  mnist1d.load()
  assert np.random.rand() == expected


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
  noisy_y = symmetric_label_noise(y, 0.3, 10, seed=0)
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
