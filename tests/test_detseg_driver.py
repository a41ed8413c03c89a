"""Detection and segmentation through the classifiers' driver: the configs' checks, a YOLO run
stopped by SIGTERM that resumes to the uninterrupted run's metrics, and a segmentation L2T-DLN run
on two devices that matches the one-device run. Tiny images and backbones keep it quick."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from l2t_jax.config import ConfigError, validate
from l2t_jax.metrics import TIMING_KEYS, read_metrics
from l2t_jax.train import Interrupted, train

TINY = {"data.image_size": 32, "data.shapes_train_size": 64, "data.shapes_test_size": 16,
        "data.val_size": 16, "student.base_width": 4, "train.batch_size": 8,
        "train.eval_batch_size": 16, "meta.val_batch_size": 8, "meta.unroll_steps": 2,
        "meta.interval": 4, "train.log_every": 4, "train.eval_every": 8}


def tiny(name, **overrides):
  from configs import shapes_seg, shapes_yolo
  config = {"yolo": shapes_yolo, "seg": shapes_seg}[name].get_config()
  for key, value in {**TINY, **overrides}.items():
    group, leaf = key.split(".") if "." in key else (None, key)
    setattr(config[group] if group else config, leaf, value)
  return config


@pytest.mark.parametrize("overrides,message", [
    ({"student.name": "mlp"}, "data.name='shapes_detection' is taught to student.name='yolo'"),
    ({"data.name": "mnist1d"}, "student.name='yolo' needs data.name one of"),
    ({"method": "l2t_dlf"}, "method='l2t_dlf' is a classification loss"),
    ({"meta.val_objective": "calibrated_ce"}, "set meta.val_objective='ce'"),
    ({"data.image_size": 48}, "data.image_size=48 must be a multiple of 32"),
])
def test_bad_detection_configs_are_refused_with_the_fix(overrides, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(tiny("yolo", **overrides))


def _deterministic(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_yolo_run_reports_map_and_resumes_to_the_uninterrupted_metrics(tmp_path):
  config = tiny("yolo", method="ce", **{"train.steps": 16, "checkpoint.every": 4})
  full, run = str(tmp_path / "full"), str(tmp_path / "run")
  train(config, workdir=full, log=lambda _: None)

  def sigterm_at_8(line):
    if line.startswith("eval       8/"):
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(Interrupted):
    train(config, workdir=run, log=sigterm_at_8)
  train(config, workdir=run, log=lambda _: None)
  records = read_metrics(run)
  assert _deterministic(records) == _deterministic(read_metrics(full))
  final = [r for r in records if r["kind"] == "eval"][-1]
  assert 0.0 <= final["test_accuracy"] <= 1.0 and 0.0 <= final["test_map_11point"] <= 1.0
  assert np.isfinite(final["test_loss"])
  summary = json.load(open(os.path.join(run, "summary.json")))
  assert summary["test_accuracy"] == final["test_accuracy"]


def _two_runs(devices_path):
  """In the subprocess: the same tiny segmentation L2T-DLN run on one device and on two."""
  from l2t_jax.train import train as run
  out = {}
  for devices in (1, 2):
    config = tiny("seg", method="l2t_dln", **{"train.steps": 8, "parallel.devices": devices})
    summary = run(config, log=lambda _: None).summary
    out[devices] = {k: summary[k] for k in ("test_accuracy", "test_loss", "final_train_ce",
                                             "meta_updates")}
  with open(devices_path, "w") as f:
    json.dump(out, f)


# Two L2T-DLN compilations of the segmentation student in a subprocess: 366 s on this shared
# 2-core machine (load ~10), too long for the 10-minute suite; run it with L2T_JAX_SLOW_TESTS=1.
@pytest.mark.skipif(not os.environ.get("L2T_JAX_SLOW_TESTS"),
                    reason="slow (two L2T-DLN compilations): set L2T_JAX_SLOW_TESTS=1")
def test_segmentation_l2t_dln_on_two_devices_matches_one_device(root, tmp_path):
  path = str(tmp_path / "runs.json")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "tests")])}
  code = f"import test_detseg_driver as t; t._two_runs({path!r})"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  runs = json.load(open(path))
  one, two = runs["1"], runs["2"]
  # Every DLN update applied (none skipped as non-finite: with Adam, the student optimizer needs
  # its eps_root for that, l2t_jax/optim.py).
  assert one["meta_updates"] == two["meta_updates"] == 2
  for key in ("test_accuracy", "test_loss", "final_train_ce"):
    assert two[key] == pytest.approx(one[key], rel=1e-3, abs=1e-4), key
  assert 0.0 <= one["test_accuracy"] <= 1.0

