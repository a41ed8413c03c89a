"""What the benchmark scripts (and the tests that run them small) share: the paper's settings by
name, and the shrinking that turns a setting into a few-second smoke run of the same code path."""

from __future__ import annotations

import importlib.util
import json
import os

import ml_collections
import numpy as np

from l2t_jax.data import Dataset, Split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")

# The settings of the paper's classification tables: one config file each in configs/.
PAPER_CONFIGS = (
    "mnist_mlp", "mnist_lenet",
    "cifar10_resnet8", "cifar10_resnet20", "cifar10_resnet32", "cifar10_wrn", "cifar10_densenet",
    "cifar100_resnet8", "cifar100_resnet20", "cifar100_resnet32", "cifar100_wrn",
    "cifar100_densenet",
)

# The smallest member of each family, which compiles in seconds on a CPU: ResNet-8 for the CIFAR
# ResNets, WRN-10-2 for WRN-28-10, DenseNet-BC-10 (one layer per block) for DenseNet-BC-100.
SMOKE_ARCHITECTURE = {"resnet": dict(depth=8), "wrn": dict(depth=10, widen_factor=2),
                      "densenet": dict(depth=10)}


def load_config(name: str) -> ml_collections.ConfigDict:
  """`configs/<name>.py`'s `get_config()`."""
  path = os.path.join(CONFIG_DIR, f"{name}.py")
  if not os.path.exists(path):
    raise ValueError(f"no config '{name}' ({path}); known: {', '.join(PAPER_CONFIGS)}")
  return config_from_file(path)


def config_from_file(path: str) -> ml_collections.ConfigDict:
  """The `get_config()` of the config file at `path`."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def smoke_config(config: ml_collections.ConfigDict, small_architecture: bool = True,
                 batch_size: int = 8) -> ml_collections.ConfigDict:
  """The same experiment in two cycles of two steps on a few examples (`tfds.testing.mock_data`
  size): the first cycle updates the DLN, the second also the teacher; the learning rate drops
  once; `small_architecture` swaps deep students for the smallest of their family."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.val_size = 16
  c.train.batch_size = batch_size
  c.train.steps = 4
  c.train.log_every = 2
  c.train.eval_every = 4
  c.train.eval_batch_size = 16
  c.meta.unroll_steps = 1
  c.meta.interval = 2
  c.meta.teacher_every = 1
  c.meta.val_batch_size = 8
  c.optim.boundaries = (2,) if c.optim.schedule == "piecewise" else ()
  c.checkpoint.every = 0
  if small_architecture:
    for key, value in SMOKE_ARCHITECTURE.get(c.student.name, {}).items():
      c.student[key] = value
  return c


def synthetic_dataset(input_shape: tuple[int, ...], num_classes: int, train: int, val: int,
                      seed: int = 0) -> Dataset:
  """Random inputs and labels of a dataset's shapes: enough to time training, nothing to learn."""
  rng = np.random.default_rng(seed)

  def split(n):
    return Split(rng.normal(size=(n, *input_shape)).astype(np.float32),
                 rng.integers(0, num_classes, n).astype(np.int32))

  return Dataset("synthetic", split(train), split(val), split(val), num_classes)


def finished_summary(workdir: str, config: ml_collections.ConfigDict,
                     needed: tuple[str, ...] = ()) -> dict | None:
  """The summary of the run in `workdir` when it finished with exactly `config` (and holds the
  files `needed`), so that a benchmark can reuse it; None otherwise."""
  files = ("summary.json", "config.json") + needed
  if not all(os.path.exists(os.path.join(workdir, f)) for f in files):
    return None
  with open(os.path.join(workdir, "config.json")) as f:
    if json.load(f) != json.loads(config.to_json()):
      return None
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)
