"""Saving a trained LSTM teacher and starting new runs from it (`config.teacher_init`)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_config
from l2t_jax.config import ConfigError, default_config, validate
from l2t_jax.build import make_teacher
from l2t_jax.teacher_io import load_teacher, save_teacher
from l2t_jax.train import build_run, train


def _random_theta(teacher_cfg, seed=3):
  return make_teacher(teacher_cfg).init(jax.random.PRNGKey(seed))


def _assert_trees_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_then_load_gives_the_same_parameters(tmp_path):
  cfg = default_config().teacher
  theta = _random_theta(cfg)
  path = str(tmp_path / "sub" / "teacher.msgpack")
  save_teacher(path, theta, cfg)
  assert os.listdir(tmp_path / "sub") == ["teacher.msgpack"]  # no temporary file left behind
  _assert_trees_equal(load_teacher(path, cfg, make_teacher(cfg)), theta)
  cfg.learning_rate = 0.0  # how the teacher learns is not its architecture
  _assert_trees_equal(load_teacher(path, cfg, make_teacher(cfg)), theta)


def test_a_run_with_teacher_init_starts_from_the_saved_teacher(tmp_path):
  config = small_config("l2t_dln", steps=20)
  theta = _random_theta(config.teacher, seed=7)
  path = str(tmp_path / "teacher.msgpack")
  save_teacher(path, theta, config.teacher)
  plain = build_run(config)
  config.teacher_init = path
  loaded = build_run(config)
  x = jnp.asarray(plain.dataset.train.x[:1])
  s0 = plain.method.init(jax.random.PRNGKey(0), x)
  s1 = loaded.method.init(jax.random.PRNGKey(0), x)
  _assert_trees_equal(s1.teacher.teacher_params, theta)
  assert not all(
    np.array_equal(a, b)
    for a, b in zip(
      jax.tree_util.tree_leaves(s0.teacher.teacher_params), jax.tree_util.tree_leaves(theta)
    )
  )
  # Everything else starts as without teacher_init: the student, the DLN at cross-entropy, zero
  # LSTM memory, a fresh teacher optimizer (its moments at zero).
  for field in ("student", "loss_params", "features", "counters"):
    _assert_trees_equal(getattr(s1, field), getattr(s0, field))
  for field in ("opt_state", "memory", "window"):
    _assert_trees_equal(getattr(s1.teacher, field), getattr(s0.teacher, field))
  assert all(not np.any(np.asarray(m)) for m in jax.tree_util.tree_leaves(s1.teacher.memory))


def test_missing_file_is_refused_with_the_path_and_the_fix(tmp_path):
  config = small_config("l2t_dln", steps=20)
  config.teacher_init = str(tmp_path / "nowhere.msgpack")
  with pytest.raises(
    ConfigError, match=r"nowhere\.msgpack': no such file.*WORKDIR/teacher\.msgpack"
  ):
    build_run(config)


def test_another_architecture_is_refused_naming_the_differing_keys(tmp_path):
  cfg = default_config().teacher
  path = str(tmp_path / "teacher.msgpack")
  save_teacher(path, _random_theta(cfg), cfg)
  cfg.hidden, cfg.state_features = 8, False
  with pytest.raises(
    ConfigError,
    match=r"another architecture \(teacher\.hidden: file 20 vs config "
    r"8, teacher\.state_features: file True vs config False\)",
  ):
    load_teacher(path, cfg, make_teacher(cfg))
  (tmp_path / "junk.msgpack").write_bytes(b"not a teacher")
  with pytest.raises(ConfigError, match="is not a teacher file"):
    teacher_cfg = default_config().teacher
    load_teacher(str(tmp_path / "junk.msgpack"), teacher_cfg, make_teacher(teacher_cfg))


def test_teacher_init_is_refused_for_methods_without_an_lstm_teacher():
  config = small_config("l2t_dlf", steps=20)
  config.teacher_init = "teacher.msgpack"
  with pytest.raises(ConfigError, match="only method='l2t_dln' has, not method='l2t_dlf'"):
    validate(config)


def test_a_trained_teacher_is_saved_and_starts_a_frozen_second_run(root, tmp_path):
  workdir = tmp_path / "first"
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "l2t_jax.cli",
      f"--config={root}/configs/mnist1d_mlp.py",
      "--config.train.steps=40",
      "--config.train.eval_every=20",
      "--config.train.log_every=20",
      "--config.meta.teacher_every=2",
      f"--workdir={workdir}",
    ],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env={**os.environ, "PYTHONPATH": root},
  )
  assert out.returncode == 0, out.stderr[-3000:]
  path = str(workdir / "teacher.msgpack")
  assert f"teacher saved to   {path}" in out.stdout
  config = small_config("l2t_dln", steps=40)
  trained = load_teacher(path, config.teacher, make_teacher(config.teacher))

  config.teacher_init, config.teacher.learning_rate = path, 0.0  # frozen: teaches, never learns
  config.meta.teacher_every = 2
  seen = []  # the evaluation hook sees the state at every evaluation, step 0 included
  result = train(
    config,
    workdir=str(tmp_path / "second"),
    log=lambda _: None,
    on_eval=lambda step, state: seen.append((step, int(state.step))),
  )
  assert seen == [(0, 0), (40, 40)]
  assert result.summary["teacher_updates"] >= 1 and result.summary["meta_updates"] == 4
  assert np.isfinite(result.summary["test_accuracy"])
  _assert_trees_equal(jax.device_get(result.state.teacher.teacher_params), trained)
  second = str(tmp_path / "second" / "teacher.msgpack")
  _assert_trees_equal(load_teacher(second, config.teacher, make_teacher(config.teacher)), trained)
