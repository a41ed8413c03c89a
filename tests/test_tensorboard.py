"""train.tensorboard: the records of metrics.jsonl as TensorBoard event files, read back with
TensorBoard's own reader; a resumed run shows each step once; the writer is closed however the run
ends."""

import os
import shutil
import threading

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import small_config
from l2t_jax.config import ConfigError
from l2t_jax.metrics import read_metrics
from l2t_jax.train import Interrupted, train
from test_workdir import quiet, stop_at, tiny


def tensorboard_config(every: int = 0):
  config = tiny(every=every)
  config.train.tensorboard = True
  return config


def scalars(workdir) -> dict[str, list[tuple[int, float]]]:
  """Every scalar TensorBoard reads from `workdir/tensorboard`: tag -> [(step, value)]."""
  events = EventAccumulator(os.path.join(workdir, "tensorboard"), size_guidance={"scalars": 0})
  events.Reload()
  return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected(workdir) -> dict[str, list[tuple[int, float]]]:
  """What metrics.jsonl says TensorBoard must show."""
  out = {}
  for record in read_metrics(workdir):
    for key, value in record.items():
      if key not in ("kind", "step") and value is not None:
        out.setdefault(f"{record['kind']}/{key}", []).append((record["step"], value))
  return out


def assert_same(got, want):
  assert sorted(got) == sorted(want)
  for tag, points in want.items():
    assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
    values = [v for _, v in points]
    assert [v for _, v in got[tag]] == pytest.approx(values, rel=1e-6), tag  # float32 there


def no_writer_threads():
  return not [t for t in threading.enumerate() if "tensorboardX" in type(t).__module__]


def test_a_run_writes_its_metrics_as_tensorboard_scalars_at_their_steps(tmp_path):
  w = str(tmp_path / "w")
  train(tensorboard_config(), workdir=w, log=quiet)
  got = scalars(w)
  assert [s for s, _ in got["train/train_loss"]] == [20, 40, 60]
  assert [s for s, _ in got["eval/test_accuracy"]] == [0, 20, 40, 60]
  assert_same(got, expected(w))
  assert no_writer_threads()


def test_a_resumed_run_shows_each_step_once_and_every_exit_closes_the_writer(tmp_path):
  w = str(tmp_path / "w")
  with pytest.raises(Interrupted):
    train(tensorboard_config(every=20), workdir=w, log=stop_at(40))
  assert no_writer_threads()  # closed on the way out of the interrupted run
  # As if killed after step 40's records were written but before its checkpoint: the resumed run
  # starts from step 20 and writes the records of step 40 again.
  shutil.rmtree(os.path.join(w, "checkpoints", "40"))
  train(tensorboard_config(every=20), workdir=w, log=quiet)
  assert_same(scalars(w), expected(w))
  assert [s for s, _ in scalars(w)["eval/val_accuracy"]] == [0, 20, 40, 60]


def test_tensorboard_needs_a_workdir():
  config = small_config("ce", steps=20)
  config.train.tensorboard = True
  with pytest.raises(
    ConfigError,
    match=r"train.tensorboard=True writes event files in the "
    r"workdir, and there is none",
  ):
    train(config, log=quiet)
