"""A benchmark sweep's runs sent to a cluster scheduler through submitit, instead of the local pool.

`--executor=slurm` submits every run as its own SLURM job (sbatch, through submitit), with the
`--slurm_*` resources; `--executor=submitit_local` runs each as a local submitit job (processes on
this machine, `--jobs` at a time: the same code path, for testing). The driver stays on the login
node and does what it does with the pool: it submits what can start, collects each run's summary as
its job ends, submits the runs that wait on it (the suite's methods trained at CE's chosen rate),
and writes the report.

What the sweep has sent lives in its output folder, so that the same command, run again, picks
it up instead of starting over:

- `OUT/submitit/` holds submitit's files: each job's pickled call and result, and its logs
  (`<job id>_0_log.out`, `<job id>_0_log.err`);
- `OUT/submitit/jobs.json` maps the workdir of each run in flight (submitted, not yet collected)
  to its job and a hash of its config.

A run whose workdir holds its finished result is read there and never submitted again; a run
with a job on record for its config (queued, running, or done since) is collected from that job,
not submitted again; only the rest is submitted. `--detach` submits what can start now and returns; the same
command without it collects the sweep later (from another shell, after a logout). A job that
fails stops the sweep with its run, its job id and the path of its log; its record is dropped,
so that the same command submits it again.

Needs `pip install submitit` (in the `bench` extra).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import sys
import time
from typing import Any, Callable

EXECUTORS = ("pool", "slurm", "submitit_local")
JOBS_FILE = "jobs.json"
POLL_S = 1.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags that choose where a sweep's runs train."""
  group = parser.add_argument_group("where the runs train (benchmarks/scheduler.py)")
  group.add_argument(
    "--executor",
    choices=EXECUTORS,
    default="pool",
    help="pool: local processes (--jobs at a time); slurm: one SLURM job per run, through "
    "submitit; submitit_local: submitit's local jobs (--jobs at a time)",
  )
  group.add_argument("--slurm_partition", default="", help="SLURM partition (default: the site's)")
  group.add_argument("--slurm_time_min", type=int, default=120, help="time limit of a job")
  group.add_argument("--slurm_gpus", type=int, default=0, help="GPUs per job")
  group.add_argument("--slurm_cpus", type=int, default=4, help="CPU cores per job")
  group.add_argument("--slurm_mem_gb", type=float, default=16, help="memory per job")
  group.add_argument(
    "--slurm_setup",
    action="append",
    default=[],
    metavar="LINE",
    help="shell line run before each job, e.g. 'source .venv/bin/activate' (repeatable)",
  )
  group.add_argument(
    "--detach",
    action="store_true",
    help="submit the runs that can start now and return; the same command without --detach "
    "collects the sweep",
  )


class JobFailed(RuntimeError):
  """A run's job failed; the message names the run, the job and its log."""


def _executor(args: argparse.Namespace, folder: str):
  import submitit

  cluster = "slurm" if args.executor == "slurm" else "local"
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  if cluster == "local":
    executor.update_parameters(timeout_min=args.slurm_time_min)
    return executor
  extra = {"slurm_partition": args.slurm_partition} if args.slurm_partition else {}
  executor.update_parameters(
    timeout_min=args.slurm_time_min,
    gpus_per_node=args.slurm_gpus,
    cpus_per_task=args.slurm_cpus,
    mem_gb=args.slurm_mem_gb,
    slurm_setup=list(args.slurm_setup),
    name="l2t_jax",
    **extra,
  )
  return executor


def _attach(kind: str, folder: str, job_id: str):
  """The job `job_id` of an earlier driver, from submitit's files in `folder`."""
  import submitit

  job_class = submitit.SlurmJob if kind == "slurm" else submitit.LocalJob
  return job_class(folder, job_id)


def _ended(kind: str, job) -> bool:
  """Whether `job` is over (its result written, or it died without one)."""
  if job.paths.result_pickle.exists():
    return True
  if kind == "slurm" or getattr(job, "_process", None) is not None:
    return job.done()
  try:  # a local job of an earlier driver: its id is its process's
    os.kill(int(job.job_id), 0)
  except (ProcessLookupError, ValueError):
    return True
  except PermissionError:
    pass
  return False


def _call(init: tuple | None, fn: Callable, fn_args: tuple) -> Any:
  """What a job runs: `init` (a function and its arguments) first, then `fn(*fn_args)`."""
  if init is not None:
    init[0](*init[1])
  return fn(*fn_args)


def _fingerprint(spec) -> str:
  """The run's config, hashed: a job on record serves only the run it was submitted for."""
  return hashlib.sha256(spec.config.to_json().encode()).hexdigest()[:16]


def _error_line(text: str) -> str:
  """The last 'SomeError: message' line of a job's traceback (submitit's error text holds it)."""
  lines = [x.strip() for x in text.splitlines()]
  found = [x for x in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", x)]
  return found[-1] if found else ""


def _read_jobs(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def _write_jobs(path: str, jobs: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(jobs, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def run_all(
  specs: list,
  on_finish: Callable[[Any, dict], list],
  total: int,
  args: argparse.Namespace,
  out: str,
  job: Callable[[Any], tuple[Callable, tuple]],
  finished: Callable[[Any], bool],
  init: tuple | None = None,
) -> bool:
  """The local pool's `run_all` (benchmarks/suite.py) through submitit: trains `specs` and the
  runs that `on_finish(spec, summary)` returns as each finishes, printing a progress line per run.
  `job(spec) -> (fn, fn_args)`: what trains a run, `fn(*fn_args) -> (summary, line)` (importable
  functions, pickled by reference); `finished(spec)`: the run's workdir holds its result, which
  `fn` then reads at once (in this process, not submitted); `init`: `(function, args)` that a
  local job runs first. Returns False when `--detach` left runs to collect, else True."""
  kind = "slurm" if args.executor == "slurm" else "local"
  folder = os.path.join(out, "submitit")
  os.makedirs(folder, exist_ok=True)
  record_path = os.path.join(folder, JOBS_FILE)
  records = _read_jobs(record_path)
  # The jobs import the suite as the driver does (SLURM's sbatch passes the environment on).
  paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  if ROOT not in paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *paths])
  executor = _executor(args, folder)
  limit = getattr(args, "jobs", 1) if kind == "local" else sys.maxsize
  pending = collections.deque(specs)
  running: dict[str, tuple[Any, Any]] = {}  # workdir -> (spec, job)
  count, submitted, collected = 0, 0, 0

  def finish(spec, summary: dict, line: str) -> None:
    nonlocal count
    count += 1
    print(f"[{count}/{total}] {line}", flush=True)
    pending.extendleft(reversed(on_finish(spec, summary)))

  def start(spec) -> None:
    nonlocal submitted, collected
    record = records.get(spec.workdir)
    if record and record.get("executor") == kind and record.get("config") == _fingerprint(spec):
      running[spec.workdir] = (spec, _attach(kind, folder, record["job_id"]))
      collected += 1
      return
    fn, fn_args = job(spec)
    new = executor.submit(_call, init if kind == "local" else None, fn, fn_args)
    records[spec.workdir] = {
      "job_id": str(new.job_id),
      "executor": kind,
      "run": spec.label,
      "config": _fingerprint(spec),
    }
    _write_jobs(record_path, records)
    running[spec.workdir] = (spec, new)
    submitted += 1

  def collect(spec, handle) -> None:
    try:
      summary, line = handle.result()
    except Exception as e:  # noqa: BLE001 (submitit's FailedJobError, or a job that died)
      records.pop(spec.workdir, None)
      _write_jobs(record_path, records)
      raise JobFailed(
        f"{spec.label} failed in job {handle.job_id} (log: {handle.paths.stderr}): "
        f"{_error_line(str(e)) or type(e).__name__}; the same command submits it again"
      ) from e
    records.pop(spec.workdir, None)  # collected: its workdir holds the result from now on
    _write_jobs(record_path, records)
    finish(spec, summary, line)

  try:
    while pending or running:
      while pending and len(running) < limit:
        spec = pending.popleft()
        if finished(spec) and spec.workdir not in records:
          fn, fn_args = job(spec)
          finish(spec, *fn(*fn_args))  # its result is on disk: read, not submitted
        else:
          start(spec)
      if args.detach:
        waiting = [s for s, _ in running.values()]
        print(
          f"submitted {submitted} run(s) ({collected} already on record) to {kind} jobs in "
          f"{folder}; {len(waiting)} in flight, more may follow them. Collect the sweep with "
          "the same command without --detach",
          flush=True,
        )
        return False
      ended = [w for w, (_, handle) in running.items() if _ended(kind, handle)]
      if not ended:
        time.sleep(POLL_S)
      for workdir in ended:
        collect(*running.pop(workdir))
  finally:
    if running and not args.detach:
      print(
        f"{len(running)} job(s) still in flight, on record in {record_path}: the same command "
        "collects them",
        flush=True,
      )
  print(f"{submitted} run(s) submitted, {collected} collected from earlier jobs", flush=True)
  return True
