"""Checkpoint and resume: a run stopped by SIGTERM, then one killed outright, and finished by
`l2t-train` in the same workdir, ends with the same metrics as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from l2t_jax.config import ConfigError
from l2t_jax.metrics import TIMING_KEYS, read_metrics
from l2t_jax.train import Interrupted, train

# Checkpoints every 50 steps; logs every 40 and evaluations every 100, so that a checkpoint
# falls between log lines and carries metrics gathered since the last one.
OVERRIDES = {
  "method": "l2t_dln",
  "train.steps": 300,
  "train.log_every": 40,
  "train.eval_every": 100,
  "checkpoint.every": 50,
}
SUMMARY_KEYS = (
  "test_accuracy",
  "test_loss",
  "val_accuracy",
  "val_loss",
  "best_val_accuracy",
  "best_val_step",
  "final_train_ce",
  "meta_updates",
  "teacher_updates",
)


def resumable_config():
  from configs import mnist1d_mlp

  config = mnist1d_mlp.get_config()
  for key, value in OVERRIDES.items():
    *groups, leaf = key.split(".")
    target = config
    for group in groups:
      target = target[group]
    setattr(target, leaf, value)
  return config


def _deterministic(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _run_until_killed(workdir: str, marker: str) -> None:
  """In a subprocess: resume the run, and at step 280 (its checkpoint at 250 taken, a record
  written after it) signal the test and wait to be killed."""

  def log(line):
    if line.startswith("step     280/"):
      with open(marker, "w") as f:
        f.write("at 280")
      time.sleep(600)

  train(resumable_config(), workdir=workdir, log=log)


def test_killed_run_resumes_to_the_metrics_of_an_uninterrupted_run(root, tmp_path):
  full, run = str(tmp_path / "full"), str(tmp_path / "run")
  train(resumable_config(), workdir=full, log=lambda _: None)

  # 1. SIGTERM (sent from inside the run, at its evaluation of step 100): it saves and stops.
  def sigterm_at_100(line):
    if line.startswith("eval     100/"):
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(Interrupted) as stopped:
    train(resumable_config(), workdir=run, log=sigterm_at_100)
  assert stopped.value.step == 100
  assert max(r["step"] for r in read_metrics(run)) == 100

  # 2. A process resumes it and is killed with SIGKILL at step 280.
  marker = tmp_path / "marker"
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "tests")])}
  proc = subprocess.Popen(
    [
      sys.executable,
      "-c",
      f"import test_resume; test_resume._run_until_killed({run!r}, {str(marker)!r})",
    ],
    env=env,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 300
  while not marker.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  assert marker.exists(), proc.stderr.read()[-3000:] if proc.poll() is not None else "no marker"
  proc.kill()
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert max(r["step"] for r in read_metrics(run)) == 280  # written after the last checkpoint

  # 3. `l2t-train` resumes from the last complete checkpoint and finishes.
  args = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "l2t_jax.cli",
      f"--config={root}/configs/mnist1d_mlp.py",
      *args,
      f"--workdir={run}",
    ],
    capture_output=True,
    text=True,
    env=env,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert (
    "resumed from the checkpoint at step 250" in out.stdout
    or "resumed from the checkpoint at step 200" in out.stdout
  ), out.stdout

  # No record lost or repeated, every value as in the uninterrupted run.
  assert _deterministic(read_metrics(run)) == _deterministic(read_metrics(full))
  summaries = [json.loads(open(os.path.join(d, "summary.json")).read()) for d in (full, run)]
  assert {k: summaries[1][k] for k in SUMMARY_KEYS} == {k: summaries[0][k] for k in SUMMARY_KEYS}

  # A config that would change the results cannot continue this run.
  changed = resumable_config()
  rate = changed.optim.learning_rate
  changed.optim.learning_rate = rate / 4
  with pytest.raises(
    ConfigError, match=rf"optim.learning_rate: {rate} -> {rate / 4}.*new --workdir"
  ):
    train(changed, workdir=run, log=lambda _: None)
