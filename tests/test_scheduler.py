"""benchmarks/scheduler.py (issue 29): a sweep sent through submitit (its local executor, the code
path of a SLURM cluster) gives the results.json of the local pool, submits no finished run again,
can be collected later from its output folder, and reports a failed job with its log."""

import argparse
import dataclasses
import json
import os

import pytest

from benchmarks import scheduler, suite

pytest.importorskip("submitit")

TIMINGS = ("wall_seconds", "compile_seconds", "cost_vs_ce")


def _without_timings(x):
  """results.json without what depends on the machine's speed (and the command line)."""
  if isinstance(x, dict):
    return {k: _without_timings(v) for k, v in x.items() if k not in TIMINGS + ("command",)}
  if isinstance(x, list):
    return [_without_timings(v) for v in x]
  return x


def _submitted(out) -> int:
  """How many jobs submitit holds in the sweep's folder (one pickled call each)."""
  folder = out / "submitit"
  return len([f for f in os.listdir(folder) if f.endswith("_submitted.pkl")])


def test_a_smoke_sweep_through_submitit_matches_the_local_pool_and_is_collected_later(
  tmp_path, capsys
):
  common = ["--smoke", "--tasks=mnist1d_gen0", "--methods=ce,label_smoothing"]
  pool, jobs = tmp_path / "pool", tmp_path / "jobs"
  suite.main(common + [f"--out={pool}"])
  capsys.readouterr()

  # Sent to submitit's local jobs and left (--detach): the CE sweep's two runs are submitted,
  # the run that waits on them (label smoothing, at CE's chosen rate) is not yet.
  sent = common + [f"--out={jobs}", "--executor=submitit_local", "--jobs=2"]
  assert suite.main(sent + ["--detach"]) == {}
  assert "submitted 2 run(s)" in capsys.readouterr().out
  assert not (jobs / "results.json").exists()
  on_record = json.loads((jobs / "submitit" / "jobs.json").read_text())
  assert len(on_record) == 2

  # Collected later by the same command: the two jobs on record, not submitted again; then
  # the label smoothing run; the report is the pool's.
  suite.main(sent)
  printed = capsys.readouterr().out
  assert "1 run(s) submitted, 2 collected from earlier jobs" in printed, printed
  assert _submitted(jobs) == 3
  results = [json.loads((d / "results.json").read_text()) for d in (pool, jobs)]
  assert _without_timings(results[1]) == _without_timings(results[0])
  assert json.loads((jobs / "submitit" / "jobs.json").read_text()) == {}

  # Again: every run is finished in its workdir, read there, none submitted.
  suite.main(sent)
  printed = capsys.readouterr().out
  assert "0 run(s) submitted, 0 collected" in printed and _submitted(jobs) == 3
  lines = [line for line in printed.splitlines() if line.startswith("[")]
  assert len(lines) == 3 and all("reused" in line for line in lines)


@dataclasses.dataclass
class _Spec:
  label: str
  workdir: str
  config: object


class _Config:
  def to_json(self):
    return "{}"


def test_a_failed_job_is_reported_with_its_log_and_submitted_again_next_time(tmp_path):
  missing = str(tmp_path / "missing")
  spec = _Spec("task/method seed 0", str(tmp_path / "run"), _Config())
  args = argparse.Namespace(executor="submitit_local", jobs=1, detach=False, slurm_time_min=5)

  def run():
    scheduler.run_all(
      [spec],
      lambda *_: [],
      1,
      args,
      str(tmp_path),
      job=lambda _: (os.listdir, (missing,)),  # fails in the job: no such directory
      finished=lambda _: False,
    )

  with pytest.raises(scheduler.JobFailed) as failed:
    run()
  message = str(failed.value)
  assert message.startswith("task/method seed 0 failed in job ")
  log = message.split("(log: ")[1].split(")")[0]
  assert os.path.exists(log) and "FileNotFoundError" in open(log).read()
  assert "FileNotFoundError" in message and "submits it again" in message
  assert json.loads((tmp_path / "submitit" / "jobs.json").read_text()) == {}
