"""Every paper setting in configs/: a valid config, the published architecture at full size, and a
run of a few steps on mock data.

Compiling the deep students' unrolled hypergradient takes minutes on a CPU, so the runs use the
smallest member of each family on the same code path (benchmarks.common.SMOKE_ARCHITECTURE:
ResNet-8 for ResNet-20/32, WRN-10-2 for WRN-28-10, DenseNet-BC-10 for DenseNet-BC-100); the
full-size networks are built here (shapes only) and checked against their published sizes. The
runs cover every dataset and every student family once: cifar10_wrn and cifar10_densenet here,
mnist_lenet in test_benchmarks (paper_tables --smoke, all three methods: the MNIST dataset),
cifar100_resnet20 in test_parallel (on one device and on four); the MLP student is the one most
tests train (on MNIST-1D). The other settings differ from one of these only in the student's
depth or width or in CIFAR-10 vs CIFAR-100 (the number of classes).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from benchmarks.common import PAPER_CONFIGS, load_config, smoke_config
from l2t_jax.config import validate
from l2t_jax.students import build_student
from l2t_jax.train import train

# Parameters of the full-size students (10 classes): He et al. 2016 give 0.27M for ResNet-20 and
# 0.46M for ResNet-32, Zagoruyko & Komodakis 36.5M for WRN-28-10, Huang et al. 0.8M for
# DenseNet-BC-100 (k=12); LeNet-5 has 61,706; ResNet-8 (not in the paper) 75,290.
PARAMETERS = {
  "mnist_mlp": 545_810,
  "mnist_lenet": 61_706,
  "cifar10_resnet8": 75_290,
  "cifar10_resnet20": 269_722,
  "cifar10_resnet32": 464_154,
  "cifar10_wrn": 36_479_194,
  "cifar10_densenet": 769_162,
}
INPUT = {"mnist": (1, 28, 28, 1), "cifar10": (1, 32, 32, 3), "cifar100": (1, 32, 32, 3)}


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_config_is_valid_and_builds_the_published_student(name):
  config = validate(load_config(name))
  assert config.method == "l2t_dln"
  assert config.train.steps % config.meta.interval == 0
  assert all(b < config.train.steps for b in config.optim.boundaries)
  assert config.data.augment == config.data.name.startswith("cifar")
  classes = 100 if config.data.name == "cifar100" else 10
  student = build_student(config.student, classes)
  params, model_state = jax.eval_shape(
    student.init, jax.random.PRNGKey(0), jnp.zeros(INPUT[config.data.name])
  )
  count = sum(x.size for x in jax.tree_util.tree_leaves(params))
  expected = PARAMETERS.get(name.replace("cifar100", "cifar10"))
  head = params["Dense_0"]["kernel"].shape[0] * (classes - 10) + (classes - 10)  # wider output
  assert count == expected + (head if classes == 100 else 0)
  assert bool(model_state) == (config.student.name not in ("mlp", "lenet5"))  # BatchNorm stats


@pytest.mark.parametrize("name", ["cifar10_wrn", "cifar10_densenet"])
def test_config_compiles_and_runs_on_mock_data(name):
  config = smoke_config(load_config(name))
  with tfds.testing.mock_data(num_examples=40):
    result = train(config, log=lambda _: None)
  s = result.summary
  assert s["student_steps"] == 4 and s["meta_updates"] == 2 and s["teacher_updates"] == 1
  assert s["skipped_meta_updates"] == 0 and np.isfinite(s["final_train_ce"])
  assert np.isfinite(s["test_loss"])


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("student.depth", 21, "student.depth=21: a CIFAR ResNet has depth 6n+2"),
    ("data.name", "mnist1d", "student.name='resnet' needs images"),
    (
      "checkpoint.every",
      2005,
      "checkpoint.every=2005 must be 0 (no checkpoints) or a positive multiple of meta.interval=10",
    ),
  ],
)
def test_impossible_paper_settings_are_refused(key, value, message):
  from l2t_jax.config import ConfigError

  config = load_config("cifar10_resnet20")
  group, leaf = key.split(".")
  config[group][leaf] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    validate(config)
