"""The three splits of a classification dataset, and how they are made from the raw data.

Validation is carved from the end of the training split (whose order is fixed by the source), never
from the test split; a smaller training set (data.train_size) is the first examples left after it.
With `data.split='redrawn_half'` nothing is carved off: the validation split *is* the whole
training split (the same arrays), the pool whose halves the sampler re-draws every epoch, and what
the evaluations report as validation accuracy. Label noise, when asked for, touches the training
split only. Images are standardised per channel with the mean and standard deviation of the
training split (after the carve-out), so nothing of the validation or test data leaks into the
inputs.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from l2t_jax.config import NOISE_KINDS, ConfigError


@dataclasses.dataclass(frozen=True)
class Split:
  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if len(self.x) != len(self.y):
      raise ValueError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

  def __len__(self) -> int:
    return len(self.y)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  val: Split
  test: Split
  num_classes: int

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])

  @property
  def is_image(self) -> bool:
    """Inputs shaped (height, width, channels)."""
    return len(self.input_shape) == 3


def carve_validation(x: np.ndarray, y: np.ndarray, val_size: int) -> tuple[Split, Split]:
  """Splits the last `val_size` examples of the training data off as validation."""
  if val_size >= len(y):
    raise ConfigError(
      f"data.val_size={val_size} leaves no training data: the training split has {len(y)} "
      "examples; choose a smaller data.val_size"
    )
  cut = len(y) - val_size
  return Split(x[:cut], y[:cut]), Split(x[cut:], y[cut:])


TRAIN_NOISE_STREAM, VAL_NOISE_STREAM = 0, 1  # the training and validation splits' own draws


def label_noise(
  y: np.ndarray, rate: float, num_classes: int, seed: int, kind: str = "symmetric", stream: int = 0
) -> np.ndarray:
  """Labels with a `rate` fraction changed, drawn from `seed` (and `stream`, so that two splits
  get independent draws), as the noisy-label literature draws them: "symmetric" replaces the
  label by a uniformly drawn *different* class; "pair" (pair-flip) by the next class, c -> c+1
  mod C."""
  if rate <= 0:
    return y
  if kind not in NOISE_KINDS:
    raise ValueError(f"data.label_noise_kind='{kind}' is not one of {NOISE_KINDS}")
  rng = np.random.default_rng([seed, 0x4E015E] + ([stream] if stream else []))
  flip = rng.random(len(y)) < rate
  shift = rng.integers(1, num_classes, size=len(y)) if kind == "symmetric" else 1
  noisy = np.where(flip, (y + shift) % num_classes, y)
  return noisy.astype(y.dtype)


def keep_first(split: Split, size: int) -> Split:
  """The first `size` examples of `split` (all of them when `size` is 0)."""
  if size > len(split):
    raise ValueError(
      f"data.train_size={size} asks for more training examples than the {len(split)} left "
      "after the validation carve-out (data.val_size); choose data.train_size <= "
      f"{len(split)}, or 0 for all"
    )
  return Split(split.x[:size], split.y[:size]) if size else split


def make_splits(
  name: str,
  x_train,
  y_train,
  x_test,
  y_test,
  num_classes: int,
  data_cfg: ml_collections.ConfigDict,
  seed: int,
) -> Dataset:
  """Applies the project's rules (validation carve-out or redrawn halves, smaller training set,
  label noise, train+val) to raw arrays."""
  test = Split(np.asarray(x_test), np.asarray(y_test))

  def noisy(y: np.ndarray, stream: int) -> np.ndarray:
    rate, kind = data_cfg.label_noise, data_cfg.label_noise_kind
    return label_noise(np.asarray(y), rate, num_classes, seed, kind, stream)

  if data_cfg.split == "redrawn_half":
    whole = keep_first(Split(np.asarray(x_train), noisy(y_train, 0)), data_cfg.train_size)
    return Dataset(name=name, train=whole, val=whole, test=test, num_classes=num_classes)
  train, val = carve_validation(np.asarray(x_train), np.asarray(y_train), data_cfg.val_size)
  train = keep_first(train, data_cfg.train_size)
  train = Split(train.x, noisy(train.y, TRAIN_NOISE_STREAM))
  if data_cfg.noisy_val:
    val = Split(val.x, noisy(val.y, VAL_NOISE_STREAM))
  if data_cfg.use_val_for_training:  # the validation split as it is (clean unless noisy_val)
    train = Split(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
  return Dataset(name=name, train=train, val=val, test=test, num_classes=num_classes)


def channel_statistics(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of images (N, H, W, C), accumulated in float64."""
  total = np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
  for i in range(0, len(x), chunk):
    part = x[i : i + chunk].astype(np.float64)
    total = total[0] + part.sum(axis=(0, 1, 2)), total[1] + np.square(part).sum(axis=(0, 1, 2))
  count = x.size // x.shape[-1]
  mean = total[0] / count
  return mean, np.sqrt(np.maximum(total[1] / count - mean**2, 0.0))


def standardise_images(ds: Dataset) -> Dataset:
  """Float32 images with zero mean and unit variance per channel over the training split."""
  mean, std = channel_statistics(ds.train.x)
  std = np.where(std > 0, std, 1.0)

  def apply(split: Split) -> Split:
    return Split(((split.x.astype(np.float32) - mean) / std).astype(np.float32), split.y)

  train = apply(ds.train)
  val = train if ds.val is ds.train else apply(ds.val)  # redrawn halves: one pool, kept shared
  return dataclasses.replace(ds, train=train, val=val, test=apply(ds.test))


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """The dataset named by `config.data.name`, split (and for images, standardised) by the
  project's rules. TFDS datasets are read from `config.data.data_dir`."""
  name = config.data.name
  if name == "mnist1d":
    from l2t_jax.data import mnist1d

    return make_splits(
      name, *mnist1d.load(config.data.mnist1d_seed), data_cfg=config.data, seed=config.seed
    )
  if name == "digits":
    from l2t_jax.data import digits

    return make_splits(name, *digits.load(), data_cfg=config.data, seed=config.seed)
  from l2t_jax.data import idx, tfds

  images = _image_loaders(config.data)
  if name in tfds.NUM_CLASSES:
    images[name] = lambda: tfds.load(name, config.data.data_dir)
  if name in idx.NUM_CLASSES and image_source(config.data) == "idx":
    images[name] = lambda: idx.load(name, config.data.data_dir)
  if name not in images:
    raise ValueError(
      f"data.name='{name}' is not a known dataset; known: "
      f"{['mnist1d', 'digits', *sorted(images), *sorted(tfds.NUM_CLASSES)]}"
    )
  raw = images[name]()
  return standardise_images(make_splits(name, *raw, data_cfg=config.data, seed=config.seed))


def image_source(data_cfg: ml_collections.ConfigDict) -> str:
  """Where an MNIST-like dataset is read from: `data.source`, or with "auto" the IDX files for
  Fashion-MNIST (Debian's package) and TFDS for MNIST."""
  if data_cfg.source != "auto":
    return data_cfg.source
  return "idx" if data_cfg.name == "fashion_mnist" else "tfds"


def _image_loaders(data_cfg: ml_collections.ConfigDict) -> dict:
  """The raw-array loaders of the detection and segmentation datasets, by name."""
  from l2t_jax.data import shapes, voc

  return {
    "shapes_detection": lambda: shapes.load_task("shapes_detection", data_cfg),
    "shapes_segmentation": lambda: shapes.load_task("shapes_segmentation", data_cfg),
    "voc_detection": lambda: voc.load_detection(data_cfg.image_size, data_cfg.data_dir),
    "voc_segmentation": lambda: voc.load_segmentation(data_cfg.image_size, data_cfg.data_dir),
  }
