"""Bad configs are refused with a message that names the problem."""

import os
import subprocess
import sys

import pytest

from conftest import small_config
from l2t_jax.config import ConfigError, default_config, validate


def test_default_config_is_valid():
  validate(default_config())


def test_unknown_key_is_refused_with_a_suggestion():
  config = default_config()
  config.unlock()
  config.train.stepz = 10
  with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz' \(did you mean 'train.steps'"):
    validate(config)


@pytest.mark.parametrize("key,value,message", [
    ("method", "sgd_magic", "method='sgd_magic' is not one of"),
    ("meta.unroll_steps", 20, "meta.unroll_steps=20 must be <= meta.interval=10"),
    ("train.steps", 105, "must be a multiple of meta.interval"),
    ("data.label_noise", 1.5, "data.label_noise=1.5 must lie in"),
    ("optim.learning_rate", -1.0, "optim.learning_rate=-1.0 must be > 0"),
    ("dln.features", ("log_p", "entropy"), "dln.features"),
    ("data.val_size", 0, "learns from a validation split"),
    ("dln.slope_bound", 0.5, "would clip cross-entropy itself"),
    ("data.train_size", -1, "data.train_size=-1 must be an int >= 0"),
    ("data.mnist1d_seed", -3, "data.mnist1d_seed=-3 must be an int in"),
])
def test_impossible_values_are_refused(key, value, message):
  config = default_config()
  *groups, leaf = key.split(".")
  target = config
  for group in groups:
    target = target[group]
  setattr(target, leaf, value)
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(config)


def test_a_slope_bound_needs_the_table():
  config = default_config()
  config.dln.slope_bound, config.dln.table_size = 1.0, 0
  with pytest.raises(ConfigError, match="bounds the tabulated DLN: set dln.table_size > 0"):
    validate(config)


def test_train_and_val_together_need_a_method_without_validation():
  config = default_config()
  config.data.use_val_for_training = True
  with pytest.raises(ConfigError, match="use_val_for_training"):
    validate(config)
  config.method = "ce"
  validate(config)


def _cli(args, root, cwd):
  return subprocess.run([sys.executable, "-m", "l2t_jax.cli", *args], capture_output=True,
                        text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": root})


def test_cli_refuses_an_unknown_override(root, tmp_path):
  out = _cli([f"--config={root}/configs/mnist1d_mlp.py", "--config.train.stepz=3"], root, tmp_path)
  assert out.returncode == 2
  assert "unknown config key 'stepz'" in out.stderr and "did you mean 'steps'" in out.stderr


def test_cli_refuses_a_config_file_with_an_unknown_key(root, tmp_path):
  path = tmp_path / "bad.py"
  path.write_text("from l2t_jax.config import default_config\n\n"
                  "def get_config():\n  c = default_config()\n  c.teacher.hiden = 4\n  return c\n")
  out = _cli([f"--config={path}"], root, tmp_path)
  assert out.returncode == 2
  assert "unknown config key 'teacher.hiden'" in out.stderr
  assert "teacher.hidden" in out.stderr


def test_cli_refuses_an_impossible_value(root, tmp_path):
  out = _cli([f"--config={root}/configs/mnist1d_mlp.py", "--config.meta.unroll_steps=50"], root,
             tmp_path)
  assert out.returncode == 2
  assert "meta.unroll_steps=50 must be <= meta.interval=10" in out.stderr


def test_a_generator_seed_for_another_dataset_is_refused():
  config = default_config()
  config.data.name, config.data.mnist1d_seed = "digits", 0
  with pytest.raises(ConfigError, match="data.mnist1d_seed=0 generates MNIST-1D, not "
                                        "data.name='digits'"):
    validate(config)
