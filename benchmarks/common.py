"""What the benchmark scripts (and the tests that run them small) share: the paper's settings by
name, and the shrinking that turns a setting into a few-second smoke run of the same code path."""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from configs import cifar
from l2t_jax.config import config_file_module
from l2t_jax.data import Dataset, Split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")

# The settings of the paper's classification tables: MNIST's two have a config file each, CIFAR's
# are the settings of configs/cifar.py (configs/cifar.py:NAME).
PAPER_CONFIGS = ("mnist_mlp", "mnist_lenet", *cifar.SETTINGS)

# The smallest member of each family, which compiles in seconds on a CPU: ResNet-8 for the CIFAR
# ResNets, WRN-10-2 for WRN-28-10, DenseNet-BC-10 (one layer per block) for DenseNet-BC-100.
SMOKE_ARCHITECTURE = {
  "resnet": dict(depth=8),
  "wrn": dict(depth=10, widen_factor=2),
  "densenet": dict(depth=10),
}


def config_argument(name: str) -> str | None:
  """What `--config=` takes for the experiment `name`: `configs/NAME.py`, or for a CIFAR setting
  `configs/cifar.py:NAME` (`reference_NAME`: `configs/reference_cifar.py:NAME`); None when there
  is no such experiment."""
  if os.path.exists(os.path.join(CONFIG_DIR, f"{name}.py")):
    return os.path.join(CONFIG_DIR, f"{name}.py")
  reference = name.startswith("reference_")
  setting = name.removeprefix("reference_")
  if setting in cifar.SETTINGS:
    return os.path.join(CONFIG_DIR, f"{'reference_' if reference else ''}cifar.py:{setting}")
  return None


def load_config(name: str) -> ml_collections.ConfigDict:
  """The config of the experiment `name` (a file in configs/ or a CIFAR setting: see
  `config_argument`)."""
  argument = config_argument(name)
  if argument is None:
    raise ValueError(f"no config '{name}' in {CONFIG_DIR}; the paper's: {', '.join(PAPER_CONFIGS)}")
  return config_from_file(argument)


def config_from_file(argument: str) -> ml_collections.ConfigDict:
  """The config that `--config=argument` gives: `get_config()` of the file, or `get_config(arg)`
  for `PATH:arg`."""
  path, *arg = argument.split(":", 1)
  return config_file_module(path).get_config(*arg)


def smoke_config(
  config: ml_collections.ConfigDict, small_architecture: bool = True, batch_size: int = 8
) -> ml_collections.ConfigDict:
  """The same experiment in two cycles of two steps on a few examples (`tfds.testing.mock_data`
  size): the first cycle updates the DLN, the second also the teacher; the learning rate drops
  once; `small_architecture` swaps deep students for the smallest of their family. An MLP's cycle is
  compiled fast (`train.fast_compile`: half the compile, and four steps do not feel the slower
  program); other students keep XLA's optimisations (a CIFAR WRN's smoke run took 2.4 times as long
  without them)."""
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
  c.train.fast_compile = c.student.name == "mlp"
  if small_architecture:
    for key, value in SMOKE_ARCHITECTURE.get(c.student.name, {}).items():
      c.student[key] = value
  return c


def synthetic_dataset(
  input_shape: tuple[int, ...], num_classes: int, train: int, val: int, seed: int = 0
) -> Dataset:
  """Random inputs and labels of a dataset's shapes: enough to time training, nothing to learn."""
  rng = np.random.default_rng(seed)

  def split(n):
    return Split(
      rng.normal(size=(n, *input_shape)).astype(np.float32),
      rng.integers(0, num_classes, n).astype(np.int32),
    )

  return Dataset("synthetic", split(train), split(val), split(val), num_classes)


def finished_summary(
  workdir: str, config: ml_collections.ConfigDict, needed: tuple[str, ...] = ()
) -> dict | None:
  """The summary of the run in `workdir` when it finished with exactly `config` (and holds the
  files `needed`), so that a benchmark can reuse it; None otherwise. A run older than a config key
  counts as run with that key's default (`default_config()`): new options default to the behaviour
  before them, so a key the run lacks is the same run only where `config` keeps the default."""
  from l2t_jax.config import default_config

  files = ("summary.json", "config.json") + needed
  if not all(os.path.exists(os.path.join(workdir, f)) for f in files):
    return None
  with open(os.path.join(workdir, "config.json")) as f:
    ran = json.load(f)
  wanted = json.loads(config.to_json())
  if _with_later_defaults(ran, wanted, json.loads(default_config().to_json())) != wanted:
    return None
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def _with_later_defaults(ran: dict, wanted: dict, default: dict) -> dict:
  """`ran` with the keys it lacks (and `wanted` has) filled with their defaults."""
  out = dict(ran)
  for key, value in wanted.items():
    if key not in out and key in default:
      out[key] = default[key]
    elif isinstance(value, dict) and isinstance(out.get(key), dict):
      out[key] = _with_later_defaults(out[key], value, default.get(key, {}))
  return out


def write_report(json_path: str, md_path: str, report: dict, heading: str, table: str) -> str:
  """A benchmark's results: `report` as JSON (written atomically) and, as markdown, `heading`, the
  table and the command that made it (`report["config"]["command"]`); returns the markdown."""
  from l2t_jax.metrics import write_json_atomic

  write_json_atomic(json_path, report)
  text = f"## {heading}\n\n{table}\n\n`{report['config']['command']}`\n"
  with open(md_path, "w") as f:
    f.write(text)
  return text
