"""MNIST-format (IDX) files: Fashion-MNIST and MNIST read from tiny files the tests write, checked
for damage with one error line that names the file and the fix; label noise of both kinds."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from l2t_jax.config import ConfigError, default_config, validate
from l2t_jax.data import DataError, load_dataset
from l2t_jax.data import idx
from l2t_jax.data.dataset import label_noise

TRAIN, TEST = 30, 12


def write_dataset(folder, gz=True, train=TRAIN, test=TEST, side=28, seed=0):
  """Four IDX files like Fashion-MNIST's, of random images whose label is their brightness."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  arrays = {}
  for split, n in (("train", train), ("test", test)):
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = (rng.integers(0, 20, (n, side, side)) + 20 * y[:, None, None]).astype(np.uint8)
    images, labels = idx.FILES[split]
    suffix = ".gz" if gz else ""
    idx.write(os.path.join(folder, images + suffix), x)
    idx.write(os.path.join(folder, labels + suffix), y)
    arrays[split] = x, y
  return arrays


def idx_config(folder, name="fashion_mnist", val_size=6):
  config = default_config()
  config.data.name, config.data.val_size, config.data.data_dir = name, val_size, str(folder)
  return validate(config)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_files_give_the_splits_of_an_image_dataset(tmp_path, gz, name):
  arrays = write_dataset(tmp_path, gz=gz)
  config = idx_config(tmp_path, name)
  if name == "mnist":
    config.data.source = "idx"  # MNIST is read through TFDS unless asked otherwise
  ds = load_dataset(config)
  x, y = arrays["train"]
  assert (len(ds.train), len(ds.val), len(ds.test)) == (TRAIN - 6, 6, TEST)
  assert ds.input_shape == (28, 28, 1) and ds.is_image and ds.num_classes == 10
  np.testing.assert_array_equal(ds.val.y, y[-6:])  # the last val_size training examples
  np.testing.assert_array_equal(ds.test.y, arrays["test"][1])
  assert ds.train.x.dtype == np.float32 and abs(float(ds.train.x.mean())) < 1e-4
  mean, std = x[:-6].astype(np.float64).mean(), x[:-6].astype(np.float64).std()
  np.testing.assert_allclose(ds.test.x[..., 0], (arrays["test"][0] - mean) / std, atol=1e-4)


def test_the_default_folder_is_debians(monkeypatch):
  config = default_config()
  config.data.name = "fashion_mnist"
  seen = []
  monkeypatch.setattr(idx, "read_split", lambda name, folder, split: seen.append(folder) or 1 / 0)
  with pytest.raises(ZeroDivisionError):
    load_dataset(config)
  assert seen == ["/usr/share/datasets/fashion-mnist"]


def _damage(folder, case):
  images = os.path.join(folder, "train-images-idx3-ubyte.gz")
  labels = os.path.join(folder, "train-labels-idx1-ubyte.gz")
  if case == "missing":
    os.remove(labels)
    return labels[: -len(".gz")] + "[.gz]", "does not exist"
  if case == "truncated":
    with gzip.open(images) as f:
      raw = f.read()
    with gzip.open(images, "wb") as f:
      f.write(raw[: len(raw) - 100])
    return images, "truncated"
  if case == "wrong magic":
    idx.write(images, np.zeros((TRAIN, 28, 28), np.uint8)[..., None])  # 4 dimensions, not 3
    return images, "magic number 00 00 08 03 expected, found 00000804"
  if case == "counts disagree":
    idx.write(labels, np.zeros(TRAIN - 1, np.uint8))
    return images, f"holds {TRAIN} images but"
  if case == "not gzip":
    with open(images, "wb") as f:
      f.write(b"\x1f\x8b" + b"broken")
    return images, "cannot be read"
  raise AssertionError(case)


@pytest.mark.parametrize(
  "case", ["missing", "truncated", "wrong magic", "counts disagree", "not gzip"]
)
def test_a_damaged_file_is_refused_naming_the_file_and_the_fix(tmp_path, case):
  write_dataset(tmp_path)
  path, problem = _damage(str(tmp_path), case)
  with pytest.raises(DataError) as e:
    load_dataset(idx_config(tmp_path))
  message = str(e.value)
  assert path in message and problem in message, message
  assert "apt-get install -y dataset-fashion-mnist" in message and "--config.data.source=tfds" in (
    message
  )
  assert "\n" not in message


def test_the_cli_says_it_in_one_line(root, tmp_path):
  write_dataset(tmp_path / "data")
  path, _ = _damage(str(tmp_path / "data"), "truncated")
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "l2t_jax.cli",
      f"--config={root}/configs/fashion_mnist.py:mlp",
      f"--config.data.data_dir={tmp_path / 'data'}",
      "--config.data.val_size=6",
      f"--workdir={tmp_path / 'run'}",
    ],
    capture_output=True,
    text=True,
    env={**os.environ, "PYTHONPATH": root},
  )
  assert out.returncode == 2, out.stderr[-3000:]
  (line,) = out.stderr.splitlines()
  assert line.startswith("l2t-train: error: ") and path in line and "dataset-fashion-mnist" in line


def test_a_source_for_a_dataset_without_idx_files_is_refused():
  config = default_config()
  config.data.source = "idx"
  with pytest.raises(
    ConfigError, match=r"data.source='idx' chooses how .* not data.name='mnist1d'"
  ):
    validate(config)


def test_pair_flip_noise_moves_a_class_to_the_next_one():
  y = np.arange(20000) % 10
  noisy = label_noise(y, 0.4, 10, seed=3, kind="pair")
  changed = noisy != y
  assert 0.39 < changed.mean() < 0.41
  np.testing.assert_array_equal(noisy[changed], (y[changed] + 1) % 10)
  np.testing.assert_array_equal(noisy, label_noise(y, 0.4, 10, seed=3, kind="pair"))  # per seed
  assert not np.array_equal(noisy, label_noise(y, 0.4, 10, seed=4, kind="pair"))
  # The same draw decides which labels change, whatever the kind.
  np.testing.assert_array_equal(changed, label_noise(y, 0.4, 10, seed=3) != y)


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_noisy_validation_gets_its_own_draw_of_the_same_noise(tmp_path, kind):
  arrays = write_dataset(tmp_path, train=400, test=10)
  config = idx_config(tmp_path, val_size=200)
  config.data.label_noise, config.data.label_noise_kind = 0.4, kind
  clean_val = load_dataset(config)
  y = arrays["train"][1]
  np.testing.assert_array_equal(clean_val.val.y, y[-200:])
  config.data.noisy_val = True
  noisy_val = load_dataset(config)
  np.testing.assert_array_equal(noisy_val.train.y, clean_val.train.y)  # training noise unchanged
  changed = noisy_val.val.y != y[-200:]
  assert 0.3 < changed.mean() < 0.5
  assert not np.array_equal(changed, clean_val.train.y[:200] != y[:200])  # an independent draw
  if kind == "pair":
    np.testing.assert_array_equal(noisy_val.val.y[changed], (y[-200:][changed] + 1) % 10)
  np.testing.assert_array_equal(noisy_val.test.y, arrays["test"][1])  # never the test split


def test_training_on_the_clean_validation_split_too_keeps_it_clean(tmp_path):
  arrays = write_dataset(tmp_path, train=400, test=10)
  config = idx_config(tmp_path, val_size=200)
  config.method, config.data.label_noise, config.data.use_val_for_training = "ce", 0.4, True
  ds = load_dataset(config)
  y = arrays["train"][1]
  assert len(ds.train) == 400
  np.testing.assert_array_equal(ds.train.y[200:], y[200:])  # the validation part: clean
  assert 0.3 < (ds.train.y[:200] != y[:200]).mean() < 0.5


def test_noisy_validation_without_noise_is_refused():
  config = default_config()
  config.data.noisy_val = True
  with pytest.raises(ConfigError, match="data.noisy_val=True .* data.label_noise=0"):
    validate(config)
