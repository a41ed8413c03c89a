"""A workdir belongs to one run (issue 12): a run is refused where another one lives or writes,
checkpoints are verified when restored, and a diverging student stops its run. Every run here is
the same tiny CE run, so that its cycle compiles once for the whole file."""

import dataclasses
import json
import os
import shutil
import signal

import numpy as np
import pytest

from conftest import small_config
from l2t_jax.config import ConfigError
from l2t_jax.data import Split, load_dataset
from l2t_jax.data.sampler import TRAIN_STREAM, batch_indices
from l2t_jax.metrics import TIMING_KEYS, read_metrics
from l2t_jax.train import Diverged, Interrupted, train
from l2t_jax.workdir import WorkdirError


def tiny(every: int = 0, steps: int = 60):
  config = small_config("ce", steps=steps)
  config.student.hidden = (16,)
  config.train.eval_every = config.train.log_every = 20
  config.checkpoint.every = every
  return config


def quiet(_):
  pass


def stop_at(step: int):
  """A log function that sends this process SIGTERM at the evaluation of `step`."""

  def log(line):
    if line.startswith(f"eval {step:>7d}/"):
      os.kill(os.getpid(), signal.SIGTERM)

  return log


def deterministic(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(workdir)]


def snapshot(workdir):
  """Every file under `workdir` (but the lock) with its bytes and modification time."""
  out = {}
  for dirpath, _, names in os.walk(workdir):
    for name in set(names) - {"run.lock"}:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = (f.read(), os.stat(path).st_mtime_ns)
  return out


def strict_json(text):
  def refuse(constant):
    raise ValueError(f"{constant} is not JSON")

  return json.loads(text, parse_constant=refuse)


def test_a_run_is_refused_where_another_run_lives_and_resumes_only_its_own_run(tmp_path):
  """Defect 1: a run without checkpoints deleted a stopped run's metrics; defect 6: with
  config.json gone, a seed-0 checkpoint resumed as seed 3; a finished run was rewritten."""
  w = str(tmp_path / "w")
  with pytest.raises(Interrupted):
    train(tiny(every=20), workdir=w, log=stop_at(40))
  held = snapshot(w)

  other = tiny()  # another seed, no checkpoints
  other.seed = 1
  with pytest.raises(
    WorkdirError,
    match=r"holds another run \(seed: 0 -> 1\); use a new "
    r"--workdir, or pass --overwrite",
  ):
    train(other, workdir=w, log=quiet)
  assert snapshot(w) == held

  # The checkpoints tell which run they belong to, without config.json.
  os.remove(os.path.join(w, "config.json"))
  seed3 = tiny(every=20)
  seed3.seed, seed3.optim.learning_rate = 3, 0.05
  rate = tiny().optim.learning_rate
  with pytest.raises(
    WorkdirError,
    match=rf"another config \(optim.learning_rate: {rate} -> 0.05; "
    r"seed: 0 -> 3\)",
  ):
    train(seed3, workdir=w, log=quiet)

  lines = []
  train(tiny(every=20), workdir=w, log=lines.append)
  assert "resumed from the checkpoint at step 40" in "\n".join(lines)
  assert [r["step"] for r in read_metrics(w) if r["kind"] == "eval"] == [0, 20, 40, 60]

  # Finished: reported with its final state, nothing rewritten (timing fields included).
  finished = snapshot(w)
  lines = []
  result = train(tiny(every=20), workdir=w, log=lines.append)
  assert lines[0].startswith(f"{w} holds this run, finished; nothing was run or rewritten")
  assert int(result.state.step) == 60
  assert result.summary == json.loads(finished["summary.json"][0])
  assert snapshot(w) == finished

  train(other, workdir=w, log=quiet, overwrite=True)
  assert not os.path.exists(os.path.join(w, "checkpoints"))
  assert json.loads(open(os.path.join(w, "config.json")).read())["seed"] == 1


def test_a_finished_run_without_checkpoints_is_kept_until_overwrite_deletes_all_its_files(tmp_path):
  """Defect 1's second case: a finished run's files (its teacher.msgpack too) were overwritten or
  left beside another run's."""
  w = str(tmp_path / "w")
  train(tiny(), workdir=w, log=quiet)
  with open(os.path.join(w, "teacher.msgpack"), "wb") as f:
    f.write(b"the teacher an l2t_dln run would have left")
  held = snapshot(w)
  lines = []
  result = train(tiny(), workdir=w, log=lines.append)
  assert lines[0].startswith(f"{w} holds this run, finished") and result.state is None
  assert snapshot(w) == held

  other = tiny()
  other.seed = 1
  with pytest.raises(WorkdirError, match=r"holds another run \(seed: 0 -> 1\)"):
    train(other, workdir=w, log=quiet)
  lines = []
  train(other, workdir=w, log=lines.append, overwrite=True)
  assert lines[0] == (
    f"{w}: --overwrite: deleting the run it holds (config.json, metrics.jsonl, "
    "summary.json, teacher.msgpack)"
  )
  assert not os.path.exists(os.path.join(w, "teacher.msgpack"))


def test_a_workdir_is_locked_while_its_run_writes_and_a_dead_runs_lock_is_taken_over(tmp_path):
  """Defect 2: two runs at once in one workdir interleaved their metrics and broke the rotation."""
  w = tmp_path / "w"
  w.mkdir()
  (w / "run.lock").write_text("PID 999999 on a-host\n")  # what a killed run leaves: no flock
  refusals = []

  def log(line):
    lines.append(line)
    if line.startswith("step ") and not refusals:
      try:
        train(tiny(every=20), workdir=str(w), log=quiet)
      except WorkdirError as e:
        refusals.append(str(e))

  lines = []
  train(tiny(every=20), workdir=str(w), log=log)
  assert lines[0] == (
    f"{w} was locked by a run that did not end cleanly (PID 999999 on a-host, "
    "no longer running); taking it over"
  )
  assert len(refusals) == 1
  assert f"--workdir={w} is in use by another run (PID {os.getpid()} on " in refusals[0]
  steps = [(r["kind"], r["step"]) for r in read_metrics(str(w))]
  assert steps == sorted(set(steps), key=lambda s: (s[1], s[0] == "eval"))  # one run's records
  assert (w / "run.lock").read_text() == ""  # released


def _damage(step_dir, how: str) -> None:
  """XORs 100 bytes into, or truncates, the largest file of a checkpoint's arrays."""
  files = [
    os.path.join(d, n) for d, _, names in os.walk(os.path.join(step_dir, "state")) for n in names
  ]
  path = max(files, key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  if how == "xor":
    for i in range(len(data) // 2, len(data) // 2 + 100):
      data[i] ^= 0xFF
  else:
    data = data[: len(data) // 2]
  with open(path, "wb") as f:
    f.write(data)


def test_a_damaged_checkpoint_is_reported_and_the_run_falls_back_to_the_previous_one(tmp_path):
  """Defect 3: a corrupted checkpoint was loaded unchecked (NaN, exit 0, and the rotation deleted
  the intact one); a truncated one gave a raw traceback."""
  reference = str(tmp_path / "reference")
  train(tiny(every=20), workdir=reference, log=quiet)
  w, w2 = str(tmp_path / "w"), str(tmp_path / "w2")
  with pytest.raises(Interrupted):
    train(tiny(every=20), workdir=w, log=stop_at(40))
  assert sorted(os.listdir(os.path.join(w, "checkpoints"))) == ["20", "40"]
  shutil.copytree(w, w2)

  _damage(os.path.join(w, "checkpoints", "40"), "xor")
  lines = []
  train(tiny(every=20), workdir=w, log=lines.append)
  warnings = [line for line in lines if line.startswith("warning:")]
  assert len(warnings) == 1 and warnings[0].startswith(
    "warning: the checkpoint at step 40 is damaged (array "
  )
  assert warnings[0].endswith(
    f"does not match its checksum); moved to "
    f"{w}/damaged_checkpoints/40, resuming from the one at step 20"
  )
  assert deterministic(w) == deterministic(reference)
  assert sorted(os.listdir(os.path.join(w, "checkpoints"))) == ["40", "60"]  # written anew

  # Nothing intact: one error naming each checkpoint, and nothing moved.
  _damage(os.path.join(w2, "checkpoints", "40"), "truncate")
  _damage(os.path.join(w2, "checkpoints", "20"), "xor")
  with pytest.raises(
    WorkdirError,
    match=r"no intact checkpoint in .*\(step 40: unreadable: .*; "
    r"step 20: array \d+ does not match its checksum\)",
  ):
    train(tiny(every=20), workdir=w2, log=quiet)
  assert sorted(os.listdir(os.path.join(w2, "checkpoints"))) == ["20", "40"]


def test_a_garbled_metrics_line_is_named_on_resume(tmp_path):
  """Defect 5: a garbled metrics.jsonl line ended in a JSONDecodeError traceback."""
  w = str(tmp_path / "w")
  with pytest.raises(Interrupted):
    train(tiny(every=20), workdir=w, log=stop_at(20))
  path = os.path.join(w, "metrics.jsonl")
  lines = open(path).read().splitlines(keepends=True)
  lines[1] = "{garbled" + lines[1][len("{garbled") :]
  with open(path, "w") as f:
    f.writelines(lines)
  with pytest.raises(
    WorkdirError,
    match=rf"{path} line 2 is not JSON \(.*\): the file was "
    "damaged; restore it, or pass --overwrite",
  ):
    train(tiny(every=20), workdir=w, log=quiet)


def test_a_diverging_student_stops_the_run_and_its_files_stay_strict_json(tmp_path):
  """Defect 4: NaN losses printed as n/a, exit 0, and summary.json held a bare NaN."""
  config = tiny(every=20)
  ds = load_dataset(config)
  order = batch_indices(
    config.seed, TRAIN_STREAM, len(ds.train), config.train.batch_size, 0, config.train.steps
  )
  first_seen = {}
  for step, row in enumerate(order):
    for i in row:
      first_seen.setdefault(int(i), step)
  poisoned = next(i for i, step in first_seen.items() if step == 15)  # drawn first at step 15
  x = ds.train.x.copy()
  x[poisoned] = np.inf
  data = dataclasses.replace(ds, train=Split(x, ds.train.y))
  w = str(tmp_path / "w")
  lines = []
  with pytest.raises(
    Diverged,
    match=r"the student diverged: its training loss was NaN or "
    r"infinite in the cycle ending at step 20, and the run "
    r"stopped.*lower optim.learning_rate \(it is "
    rf"{config.optim.learning_rate}\)",
  ):
    train(config, workdir=w, log=lines.append, dataset=data)
  assert (
    "DIVERGED           the student's loss was NaN or infinite in the cycle ending at step 20"
  ) in lines[-1]
  summary = strict_json(open(os.path.join(w, "summary.json")).read())
  assert summary["diverged"] and summary["diverged_at_step"] == 20
  assert summary["test_loss"] is None and summary["final_train_ce"] is None
  records = [strict_json(line) for line in open(os.path.join(w, "metrics.jsonl"))]
  assert [(r["kind"], r["step"]) for r in records] == [("eval", 0), ("train", 20), ("eval", 20)]
  assert records[1]["nonfinite_loss"] == 1 and records[1]["train_loss"] is None
  assert os.listdir(os.path.join(w, "checkpoints")) == []  # no checkpoint of a diverged state

  held = snapshot(w)
  with pytest.raises(Diverged):  # reported again, not rewritten
    train(config, workdir=w, log=quiet, dataset=data)
  assert snapshot(w) == held


def test_checkpoints_need_a_workdir_and_the_validation_split_must_leave_training_data():
  """Defect 6: checkpoint.every without a workdir saved nothing; defect 5: data.val_size beyond
  the training split was a ValueError traceback."""
  with pytest.raises(
    ConfigError,
    match=r"checkpoint.every=20 saves checkpoints in the workdir, "
    r"and there is none: pass --workdir",
  ):
    train(tiny(every=20), log=quiet)
  config = tiny()
  config.data.val_size = 4000
  with pytest.raises(ConfigError, match="data.val_size=4000 leaves no training data"):
    train(config, log=quiet)
