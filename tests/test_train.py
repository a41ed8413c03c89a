"""End to end: every method through `l2t-train`, determinism, and the own-loop example."""

import json
import os
import subprocess
import sys

import pytest

from conftest import small_config
from l2t_jax.config import ConfigError
from l2t_jax.metrics import TIMING_KEYS, read_metrics
from l2t_jax.train import _rate, train

SUMMARY_KEYS = {"method", "seed", "student_steps", "test_accuracy", "val_accuracy", "wall_seconds"}


def _deterministic(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.parametrize("method", ["ce", "label_smoothing", "focal", "l2t_dlf", "l2t_dln"])
def test_l2t_train_lowers_the_validation_loss_and_writes_its_files(method, root, tmp_path):
  workdir = tmp_path / "run"
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "l2t_jax.cli",
      f"--config={root}/configs/mnist1d_mlp.py",
      f"--config.method={method}",
      "--config.train.steps=300",
      "--config.train.eval_every=150",
      "--config.train.log_every=100",
      f"--workdir={workdir}",
    ],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env={**os.environ, "PYTHONPATH": root},
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"== {method} on mnist1d (mlp), seed 0 ==" in out.stdout
  assert "step     100/300" in out.stdout
  summary = json.loads((workdir / "summary.json").read_text())
  assert SUMMARY_KEYS <= set(summary) and summary["method"] == method
  assert summary["student_steps"] == 300
  evals = [r for r in read_metrics(workdir) if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [0, 150, 300]
  assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.3
  assert summary["test_accuracy"] > 0.3  # a uniform guess gets 0.1
  trains = [r for r in read_metrics(workdir) if r["kind"] == "train"]
  assert [r["step"] for r in trains] == [100, 200, 300]
  if method in ("l2t_dlf", "l2t_dln"):
    assert summary["meta_updates"] == 30 and summary["skipped_meta_updates"] == 0
    assert summary["teacher_updates"] == (6 if method == "l2t_dlf" else 5)


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path):
  runs = {}
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    config = small_config("l2t_dln", steps=100)
    config.seed = seed
    train(config, workdir=str(tmp_path / name), log=lambda _: None)
    runs[name] = _deterministic(read_metrics(str(tmp_path / name)))
  assert runs["a"] == runs["b"]
  assert runs["a"] != runs["c"]
  assert [r["kind"] for r in runs["a"]] == ["eval", "train", "eval"]


def test_batch_larger_than_the_validation_split_is_refused():
  config = small_config()
  config.meta.val_batch_size = 501
  with pytest.raises(ConfigError, match="meta.val_batch_size=501 exceeds the 500 validation"):
    train(config, log=lambda _: None)


def test_a_slow_run_prints_its_rate_and_not_zero():
  assert _rate(0.3523) == "0.35"  # a detector on a CPU
  assert _rate(738.9) == "739"
  assert _rate(None).strip() == "n/a"
