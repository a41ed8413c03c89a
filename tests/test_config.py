"""Bad configs are refused with a message that names the problem."""

import os
import subprocess
import sys

import ml_collections
import pytest

from l2t_jax.config import ConfigError, default_config, validate


def test_default_config_is_valid():
  validate(default_config())


def test_unknown_key_is_refused_with_a_suggestion():
  config = default_config()
  config.unlock()
  config.train.stepz = 10
  with pytest.raises(
    ConfigError, match=r"unknown config key 'train.stepz' \(did you mean 'train.steps'"
  ):
    validate(config)


@pytest.mark.parametrize(
  "key,value,message",
  [
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
    ("optim.learning_rate", float("inf"), "optim.learning_rate=inf must be finite"),
    ("teacher.output_scale", float("nan"), "teacher.output_scale=nan must be finite"),
    ("teacher.output_scale", -1e-3, "teacher.output_scale=-0.001 must be >= 0"),
    ("teacher.adam_eps", 0.0, "teacher.adam_eps=0.0 must be > 0"),
    ("train.steps", 10**20, "train.steps=100000000000000000000 must be at most 2147483647"),
    ("student.hidden", (-5, 100), "student.hidden=(-5, 100) must be positive ints"),
    ("optim.decay_factor", -0.5, "optim.decay_factor=-0.5 must be > 0"),
  ],
)
def test_impossible_values_are_refused(key, value, message):
  config = default_config()
  *groups, leaf = key.split(".")
  target = config
  for group in groups:
    target = target[group]
  setattr(target, leaf, value)
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(config)


def test_tensorboard_is_a_bool():
  """A config built from a dict (a file, JSON) escapes ConfigDict's type check: validate names it."""
  as_dict = default_config().to_dict()
  as_dict["train"]["tensorboard"] = 1
  with pytest.raises(ConfigError, match="train.tensorboard=1 must be True or False"):
    validate(ml_collections.ConfigDict(as_dict))


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
  return subprocess.run(
    [sys.executable, "-m", "l2t_jax.cli", *args],
    capture_output=True,
    text=True,
    cwd=cwd,
    env={**os.environ, "PYTHONPATH": root},
  )


def test_cli_refuses_an_unknown_override(root, tmp_path):
  out = _cli([f"--config={root}/configs/mnist1d_mlp.py", "--config.train.stepz=3"], root, tmp_path)
  assert out.returncode == 2
  assert "unknown config key 'stepz'" in out.stderr and "did you mean 'steps'" in out.stderr


def test_cli_refuses_a_config_file_with_an_unknown_key(root, tmp_path):
  path = tmp_path / "bad.py"
  path.write_text(
    "from l2t_jax.config import default_config\n\n"
    "def get_config():\n  c = default_config()\n  c.teacher.hiden = 4\n  return c\n"
  )
  out = _cli([f"--config={path}"], root, tmp_path)
  assert out.returncode == 2
  assert "unknown config key 'teacher.hiden'" in out.stderr
  assert "teacher.hidden" in out.stderr


def test_cli_refuses_an_impossible_value(root, tmp_path):
  out = _cli(
    [f"--config={root}/configs/mnist1d_mlp.py", "--config.meta.unroll_steps=50"], root, tmp_path
  )
  assert out.returncode == 2
  assert out.stderr == (
    "l2t-train: error: invalid config: meta.unroll_steps=50 must be <= meta.interval=10\n"
  )


def _read_only_dir(tmp_path) -> str:
  """A directory this process cannot write in (root writes anywhere but in sysfs)."""
  if os.geteuid() == 0:
    return "/sys/l2t_jax_test_workdir"
  path = tmp_path / "read_only"
  path.mkdir(mode=0o555)
  return str(path)


@pytest.mark.parametrize(
  "case",
  [
    "no such file",
    "no get_config",
    "unknown setting",
    "overrides first",
    "read-only workdir",
    "full disk",
  ],
)
def test_cli_user_errors_end_in_one_line_with_exit_code_2(case, root, tmp_path):
  """Issue 12, defect 5: each of these ended in a traceback and exit code 1 (or named the wrong
  problem); now one line names the problem and the fix."""
  config = f"--config={root}/configs/mnist1d_mlp.py"
  (tmp_path / "no_get_config.py").write_text("from l2t_jax.config import default_config\n")
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "run.lock").symlink_to("/dev/full")  # every write: ENOSPC
  args, message = {
    "no such file": (
      ["--config=nowhere.py"],
      "config file 'nowhere.py' not found (--config=nowhere.py); pass an existing "
      "file, e.g. --config=configs/mnist1d_mlp.py",
    ),
    "no get_config": (
      ["--config=no_get_config.py"],
      "no_get_config.py has no get_config() function",
    ),
    "unknown setting": (
      [f"--config={root}/configs/cifar.py:cifar10_resnet9"],
      "unknown CIFAR setting 'cifar10_resnet9'; choose one of cifar10_resnet8",
    ),
    "overrides first": (
      ["--config.method=ce"],
      "--config.method overrides a key of the config "
      "file, but there is no --config: pass --config=configs/mnist1d_mlp.py",
    ),
    "read-only workdir": (
      [config, f"--workdir={_read_only_dir(tmp_path)}"],
      "); choose a writable directory",
    ),
    "full disk": (
      [config, "--workdir=full"],
      "No space left on device (full/run.lock); free "
      "some space, or choose a --workdir on another disk",
    ),
  }[case]
  out = _cli(args, root, tmp_path)
  assert out.returncode == 2, out.stderr[-3000:]
  (line,) = out.stderr.splitlines()
  assert line.startswith("l2t-train: error: ") and message in line


def test_cli_debug_shows_the_traceback_before_the_error_line(root, tmp_path):
  (tmp_path / "a_file").write_text("")
  out = _cli(
    [f"--config={root}/configs/mnist1d_mlp.py", "--workdir=a_file", "--debug"], root, tmp_path
  )
  assert out.returncode == 2
  lines = out.stderr.splitlines()
  assert "Traceback (most recent call last):" in lines and "FileExistsError" in out.stderr
  assert lines[-1] == (
    "l2t-train: error: --workdir=a_file is not a directory (File exists: "
    "a_file); choose a directory for the run"
  )


def test_a_generator_seed_for_another_dataset_is_refused():
  config = default_config()
  config.data.name, config.data.mnist1d_seed = "digits", 0
  with pytest.raises(
    ConfigError, match="data.mnist1d_seed=0 generates MNIST-1D, not data.name='digits'"
  ):
    validate(config)


def test_a_curvature_bound_needs_the_bounded_table():
  config = default_config()
  config.dln.curvature_bound = 0.25
  with pytest.raises(
    ConfigError, match="dln.curvature_bound=0.25 must be >= 0 and acts on the bounded"
  ):
    validate(config)
  config.dln.slope_bound = 1.0
  validate(config)
