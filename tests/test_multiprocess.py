"""Multi-process training for real (issue 29): `l2t-train` started as two processes on this
machine (two forced CPU devices each, gloo collectives, a coordinator on a free port) ends with
the metrics of one process on four devices with the same global batch; only process 0 writes the
workdir; a SIGTERM to both saves a checkpoint that the same two-process command resumes from; and
when one process dies the other ends in one error line, soon.

The default config (configs/mnist1d_mlp.py), shortened and compiled fast; its programs compile
once per process and come from the session's compilation cache afterwards (tests/conftest.py).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from l2t_jax.metrics import TIMING_KEYS, read_metrics

STEPS = 60  # six cycles: six loss updates, one teacher update
OVERRIDES = [
  f"--config.train.steps={STEPS}",
  "--config.train.eval_every=30",
  "--config.train.log_every=20",
  "--config.train.fast_compile=True",
  "--config.meta.val_batch_size=200",  # a multiple of the four devices
  "--config.checkpoint.every=30",
]
STARTED = "l2t_jax: l2t_dln on mnist1d"  # process 0's first line, once both processes joined
WAIT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(root: str, devices: int) -> dict:
  return {
    **os.environ,
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    "PYTHONPATH": root,
    "PYTHONUNBUFFERED": "1",
  }


def _command(root: str, workdir: str, *extra: str) -> list[str]:
  return [
    sys.executable,
    "-m",
    "l2t_jax.cli",
    f"--config={root}/configs/mnist1d_mlp.py",
    *OVERRIDES,
    f"--workdir={workdir}",
    *extra,
  ]


class TwoProcesses:
  """The same command as process 0 and process 1, each output in its own files."""

  def __init__(self, root: str, workdir: str, logs: str):
    port = _free_port()
    os.makedirs(logs, exist_ok=True)
    self.logs = logs
    self.procs = []
    for i in range(2):
      flags = [
        "--config.parallel.distributed=True",
        f"--config.parallel.coordinator_address=127.0.0.1:{port}",
        "--config.parallel.num_processes=2",
        f"--config.parallel.process_id={i}",
      ]
      out = open(os.path.join(logs, f"out{i}"), "w")
      err = open(os.path.join(logs, f"err{i}"), "w")
      self.procs.append(
        subprocess.Popen(
          _command(root, workdir, *flags), env=_env(root, 2), stdout=out, stderr=err, cwd=root
        )
      )

  def text(self, stream: str, i: int) -> str:
    with open(os.path.join(self.logs, f"{stream}{i}")) as f:
      return f.read()

  def wait_for(self, text: str) -> None:
    deadline = time.time() + WAIT_S
    while text not in self.text("out", 0):
      assert time.time() < deadline, f"no '{text}' in process 0's output"
      assert all(p.poll() is None for p in self.procs), self.report()
      time.sleep(0.2)

  def wait(self, timeout: float = WAIT_S) -> list[int]:
    try:
      return [p.wait(timeout=timeout) for p in self.procs]
    finally:
      for p in self.procs:
        if p.poll() is None:
          p.kill()
          p.wait()

  def report(self) -> str:
    return "\n".join(
      f"--- process {i} {s}:\n{self.text(s, i)[-3000:]}" for i in range(2) for s in ("out", "err")
    )


def _deterministic(records: list[dict]) -> list[dict]:
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _lock_owner_pid(workdir: str) -> int:
  with open(os.path.join(workdir, "run.lock")) as f:
    return int(f.read().split()[1])  # "PID <pid> on <host>"


def _parent_pid(pid: int) -> int:
  with open(f"/proc/{pid}/status") as f:
    return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def test_two_processes_match_four_devices_resume_and_stop_together(root, tmp_path):
  # The reference: one process, four devices, the same global batch.
  one = str(tmp_path / "one")
  out = subprocess.run(
    _command(root, one, "--config.parallel.devices=4"),
    env=_env(root, 4),
    capture_output=True,
    text=True,
    cwd=root,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  reference = read_metrics(one)

  # Two processes, SIGTERM to both once they run: both save (process 0 writes) and stop.
  two = str(tmp_path / "two")
  run = TwoProcesses(root, two, str(tmp_path / "logs1"))
  run.wait_for(STARTED)
  # Process 0 holds the lock: the training child of its `l2t-train` (the one it supervises).
  assert _parent_pid(_lock_owner_pid(two)) == run.procs[0].pid
  for p in run.procs:
    p.send_signal(signal.SIGTERM)
  assert run.wait() == [143, 143], run.report()
  for i in range(2):
    assert "stopped by SIGTERM after student step" in run.text("err", i), run.report()
  stopped = read_metrics(two)
  assert max(r["step"] for r in stopped) < STEPS
  assert os.listdir(os.path.join(two, "checkpoints"))
  assert "step " not in run.text("out", 1)  # process 1 speaks not, writes not

  # The same two-process command resumes and ends with the one-process metrics.
  run = TwoProcesses(root, two, str(tmp_path / "logs2"))
  assert run.wait() == [0, 0], run.report()
  assert "resumed from the checkpoint at step" in run.text("out", 0), run.report()
  records = read_metrics(two)
  # Each record once: one writer, the interrupted part and the resumed one joined where they met.
  assert [(r["kind"], r["step"]) for r in records] == [(r["kind"], r["step"]) for r in reference]
  for a, b in zip(_deterministic(reference), _deterministic(records)):
    assert a.keys() == b.keys()
    for key, value in a.items():
      if isinstance(value, str):
        assert b[key] == value
        continue
      np.testing.assert_allclose(b[key], value, rtol=1e-4, atol=1e-6, err_msg=f"{key} {a}")
  summary = json.loads(open(os.path.join(two, "summary.json")).read())
  assert summary["devices"] == 4 and summary["student_steps"] == STEPS
  assert (
    not os.path.exists(os.path.join(two, "run.lock"))
    or not open(os.path.join(two, "run.lock")).read()
  )  # released at the end

  # One process dies (SIGKILL, its training child with it): the other ends in one line, soon.
  run = TwoProcesses(root, str(tmp_path / "dead"), str(tmp_path / "logs3"))
  run.wait_for(STARTED)
  run.procs[0].kill()
  t0 = time.time()
  codes = run.wait(timeout=90)
  assert codes[1] == 4, run.report()
  assert time.time() - t0 < 60
  lines = run.text("err", 1).strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("l2t-train: error: another process"), lines


class _Counting:
  """An array that records which rows were read."""

  def __init__(self, x):
    self.x, self.read = x, set()

  def __getitem__(self, idx):
    self.read.update(np.asarray(idx).ravel().tolist())
    return self.x[idx]

  @property
  def shape(self):
    return self.x.shape


def test_the_per_process_feed_reads_only_the_batch_and_gathers_the_global_order():
  """`DataParallel.put_cycle` (what each process of a multi-process run feeds its devices): the
  cycle's gather through its indices gives the rows the global indices name, in their order, and
  no other row of the splits is read."""
  import jax

  from l2t_jax.data.sampler import TRAIN_STREAM, VAL_STREAM, batch_indices
  from l2t_jax.parallel import DataParallel

  rng = np.random.default_rng(0)
  arrays = {
    "train_x": _Counting(rng.normal(size=(300, 5)).astype(np.float32)),
    "train_y": _Counting(rng.integers(0, 10, 300).astype(np.int32)),
    "val_x": _Counting(rng.normal(size=(50, 5)).astype(np.float32)),
    "val_y": _Counting(rng.integers(0, 10, 50).astype(np.int32)),
  }
  train_idx = batch_indices(0, TRAIN_STREAM, 300, 16, 20, 4)
  val_idx = batch_indices(0, VAL_STREAM, 50, 8, 2, 1)[0]
  dp = DataParallel(jax.local_devices()[:1])
  data, t, v = dp.put_cycle(arrays, train_idx, val_idx)
  data, t, v = jax.device_get((data, t, v))
  np.testing.assert_array_equal(data["train_x"][t], arrays["train_x"].x[train_idx])
  np.testing.assert_array_equal(data["train_y"][t], arrays["train_y"].x[train_idx])
  np.testing.assert_array_equal(data["val_x"][v], arrays["val_x"].x[val_idx])
  assert arrays["train_x"].read == set(train_idx.ravel().tolist())
  assert arrays["val_y"].read == set(val_idx.tolist())
