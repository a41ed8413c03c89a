"""The task suite: every method on every task over seeds, each measured against tuned
cross-entropy (issue 11's bar for the default L2T-DLN).

  python benchmarks/suite.py --out out/suite
  python benchmarks/suite.py --out out/suite --methods l2t_dln --tag k20 --set meta.unroll_steps=20 \
      --set meta.interval=20
  python benchmarks/suite.py --out out/suite --tasks mnist1d,digits --seeds 2,mnist1d=5
  python benchmarks/suite.py --out /tmp/suite_smoke --smoke

Tasks, all offline; each is a few config overrides applied on top of every method's config:
  mnist1d           MNIST-1D as the mnist1d package generates it by default, MLP student (5 seeds)
  mnist1d_gen0      MNIST-1D generated with the package's seed 0 (data.mnist1d_seed=0)
  mnist1d_gen1      ... with seed 1
  mnist1d_1k        the first 1000 training examples only (data.train_size=1000), same validation
  mnist1d_noise40   40 % symmetric label noise on the training split (data.label_noise=0.4)
  mnist1d_cnn       the 1-D CNN student (student.name=cnn1d) with the MLP's settings
  digits            scikit-learn's bundled 8x8 digits (data.name=digits, data.val_size=300),
                    MLP; needs scikit-learn: pip install -e '.[bench]'
Seeds 0..2 on every task but mnist1d (0..4); --seeds 2 takes two everywhere, --seeds 2,mnist1d=5
two everywhere but five on mnist1d. Every method trains the same number of student steps: the
train.steps of configs/mnist1d_ce.py (6000), or --steps.

Methods (the keys of results.json):
  ce                 cross-entropy (configs/mnist1d_ce.py); its learning rate is
                     swept over --ce_lrs (mnist1d_cnn: 0.05 and 0.1, its own) on every seed and
                     the rate of the best mean final validation accuracy is reported. Always run: every gain is measured against
                     its mean test accuracy on the task.
  ce_cosine          cross-entropy with a cosine-decayed rate, its peak swept the same way
  label_smoothing    at CE's chosen rate
  l2t_dlf            at CE's chosen rate; its teacher sees the whole validation split
                     (meta.val_batch_size=0), as published (benchmarks/compare_losses.py does same)
  l2t_dln            the default: the config file --dln_config (configs/mnist1d_mlp.py), then the
                     task's overrides, at CE's chosen rate like the other losses (a loss is
                     tried at the rate one has tuned CE to), then the --set overrides (which
                     apply to this method only; --set optim.learning_rate=R fixes the rate)
  l2t_dln_frozen     the control: l2t_dln's config with the DLN held where it starts, at
                     cross-entropy (teacher.output_scale=0, teacher.learning_rate=0; not --set),
                     at CE's chosen rate. It is CE computed another way, equal to CE's run of the
                     same seed up to float rounding; that rounding grows over thousands of steps
                     into a different final network, so its gains are what chance alone gives
                     on the task (benchmarks/results/README.md, round 5)
  l2t_dln_reference  the authors' protocol, configs/reference_mnist1d_mlp.py (--reference_config),
                     then the task's overrides
ce, ce_cosine, label_smoothing and l2t_dlf start from configs/mnist1d_ce.py (default_config(): the
L2T-DLN default can be retuned without touching them) with `method` and the rate changed.

Each run keeps its files in OUT/runs/<task>/<method>[_lr<rate>]/seed<k>; a directory holding a
finished run of the same config is reused (--rerun trains anew), so a second invocation that changes
only l2t_dln's settings trains only l2t_dln. --tag T keeps such a variant beside the others: its
runs go to OUT/runs/<task>/l2t_dln_T/ and its outputs get the suffix _T (results_T.json, ...).

Writes OUT/results.json ({"tasks": {TASK: {"methods": {METHOD: {"test_accuracy": [per seed, 0-1],
"val_accuracy", "seeds", "learning_rate", "mean", "gain_vs_ce", "gain_se" (the standard error of
the seed-by-seed differences from CE), ...}}, "ce_sweep": ...,
"ce_cosine_sweep": ...}}, "summary": {METHOD: the three numbers below}, "config": ...}), OUT/table.md
(also printed: mean test accuracy per task and method, gain over CE's mean and seeds won against
CE's seed at its rate, the mean gain over tasks, and per method issue 11's three numbers: mean gain
over tasks, the worst task's gain, the worst seed's gap to its task's CE mean), OUT/gain.png (gain
over CE's mean per task in accuracy points, one dot per seed, one colour per method) and
OUT/learned_loss_<task>.png (the DLN of the l2t_dln run of seed 0 at five points of training, most
of them early, against cross-entropy; compare_losses.plot_learned_loss).

Compiling is most of an MLP run's time on a CPU (about 10 of CE's 13 s, 35 of L2T-DLN's 45 s) and
the seed is not part of the programs (but with data.augment), so the runs share a persistent XLA compilation cache
(OUT/xla_cache, a few MB; --compilation_cache): every seed after a program's first loads it (CE
2 s, L2T-DLN 20 s). --jobs N trains N runs at a time, each in a worker process with single-threaded
XLA, a program's later seeds waiting until its first has compiled it; --jobs 1 (the default) trains
one run after another in this process with XLA's own threads. Both give the same numbers. On the
2-core machine where this was written, shared with other work, 2 jobs were no faster than 1 (133 s
against 127 s for 3 CE and 3 L2T-DLN runs; 157 s against 149 s for 12 runs on digits).
--smoke runs every task and method in four steps on a few examples (one seed, two rates): the
code path of the whole suite in a few minutes (compiling), for the tests.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import io
import multiprocessing
import os
import shlex
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import scheduler  # noqa: E402
from benchmarks.common import (  # noqa: E402
  CONFIG_DIR,
  config_from_file,
  finished_summary,
  smoke_config,
  write_report,
)
from benchmarks.compare_losses import (
  apply_override,
  load_snapshots,
  parse_override,  # noqa: E402
  plot_learned_loss,
  run_one,
)
from l2t_jax.config import config_file_module  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Task:
  overrides: dict  # "train.steps" among them: the task's own length (unless --steps)
  seeds: int
  title: str
  ce_lrs: tuple[float, ...] = ()  # this task's own CE sweep, if not --ce_lrs's (not in --smoke)
  skip: tuple[str, ...] = ()  # methods not run on this task (reported as not run; not in --smoke)
  swept: tuple[str, ...] = ("ce", "ce_cosine")  # the others of SWEPT train at CE's chosen rate


def _config_module(name: str):
  """A file of configs/ as a module (config files are loaded by path)."""
  return config_file_module(os.path.join(CONFIG_DIR, name))


def fashion_mnist_tasks() -> dict[str, Task]:
  """Fashion-MNIST (real images, Debian's dataset-fashion-mnist) with the MLP 500-300 and LeNet-5
  of configs/fashion_mnist.py: clean; 40 % symmetric and 40 % pair-flip noise with a clean
  validation split; the same noise on the validation split too (no clean data anywhere, and so
  no CE on the clean split). CE's sweep covers 0.03-0.1 and CE-cosine trains at CE's rate (a
  real-image run costs 2-3 times an MNIST-1D one on 2 cores); the control and the authors'
  protocol are left to the MNIST-1D tasks."""
  overrides = _config_module("fashion_mnist.py").task_overrides
  tasks = {}
  for student, title in (("mlp", "MLP 500-300"), ("lenet", "LeNet-5")):
    for noise, (rate, kind) in (
      ("_clean", (0.0, "")),
      ("_sym40", (0.4, "symmetric")),
      ("_pair40", (0.4, "pair")),
    ):
      for noisy_val in (False, True) if rate else (False,):
        changes = dict(overrides(student))
        if rate:
          changes.update({"data.label_noise": rate, "data.label_noise_kind": kind})
        if noisy_val:
          changes["data.noisy_val"] = True
        what = (
          f"40 % {kind} noise, {'noisy' if noisy_val else 'clean'} validation" if rate else "clean"
        )
        tasks[f"fmnist_{student}{noise}{'_noisyval' if noisy_val else ''}"] = Task(
          changes,
          5,
          f"Fashion-MNIST, {title}, {what}",
          (0.03, 0.05, 0.1),
          ("l2t_dln_frozen", "l2t_dln_reference") + (("ce_plus_val",) if noisy_val else ()),
          ("ce",),
        )
  return tasks


TASKS = {
  "mnist1d": Task({}, 5, "MNIST-1D, MLP"),
  "mnist1d_gen0": Task({"data.mnist1d_seed": 0}, 3, "MNIST-1D generated with seed 0, MLP"),
  "mnist1d_gen1": Task({"data.mnist1d_seed": 1}, 3, "MNIST-1D generated with seed 1, MLP"),
  "mnist1d_1k": Task({"data.train_size": 1000}, 3, "MNIST-1D, 1000 training examples, MLP"),
  "mnist1d_noise40": Task({"data.label_noise": 0.4}, 3, "MNIST-1D, 40 % label noise, MLP"),
  # The CNN's steps cost 30 times the MLP's: its sweep covers the two rates that CE's sweep on it
  # has ever picked between (0.05 and 0.1; benchmarks/results/compare_mnist1d_cnn), and the
  # reference rows, the meta-learned baselines and the control are left to a machine with more
  # than 2 cores.
  "mnist1d_cnn": Task(
    {"student.name": "cnn1d"},
    3,
    "MNIST-1D, 1-D CNN",
    (0.05, 0.1),
    ("ce_cosine", "l2t_dlf", "l2t_dln_frozen", "l2t_dln_reference"),
  ),
  "digits": Task({"data.name": "digits", "data.val_size": 300}, 3, "sklearn digits (8x8), MLP"),
}
# The four tasks outside the suite, never used to choose anything (benchmarks/results/README.md,
# round 4): `--tasks` takes them by name, the suite's default list leaves them out.
HELD_OUT_TASKS = {
  "mnist1d_gen2": Task(
    {"data.mnist1d_seed": 2}, 3, "MNIST-1D generated with seed 2, MLP (held out)"
  ),
  "mnist1d_noise20": Task(
    {"data.label_noise": 0.2}, 3, "MNIST-1D, 20 % label noise, MLP (held out)"
  ),
  "mnist1d_2k": Task(
    {"data.train_size": 2000}, 3, "MNIST-1D, 2000 training examples, MLP (held out)"
  ),
  "mnist1d_wide": Task({"student.hidden": (256, 256)}, 3, "MNIST-1D, MLP 256-256 (held out)"),
}
# Real images: `--tasks fmnist` takes them all, `--tasks fmnist_mlp` those of one student.
REAL_IMAGE_TASKS = fashion_mnist_tasks()
KNOWN_TASKS = {**TASKS, **HELD_OUT_TASKS, **REAL_IMAGE_TASKS}
METHODS = (
  "ce",
  "ce_cosine",
  "label_smoothing",
  "gce",
  "sce",
  "ce_plus_val",
  "l2t_dlf",
  "l2t_dln",
  "l2t_dln_frozen",
  "l2t_dln_reference",
)
SWEPT = {"ce": {}, "ce_cosine": {"optim.schedule": "cosine"}}  # method: changes beside the rate
# Trained once CE's rate is chosen on the task, at that rate.
AT_CE_RATE = (
  "label_smoothing",
  "gce",
  "sce",
  "ce_plus_val",
  "l2t_dlf",
  "l2t_dln",
  "l2t_dln_frozen",
)
DLF_VAL_BATCH = 1000  # validation examples per hypergradient of L2T-DLF, at most
# ce_plus_val: CE on the training split and the (clean) validation split: what the clean labels buy
PLUS_VAL = {"method": "ce", "data.use_val_for_training": True}
# The control: l2t_dln's config and code with a teacher that never moves the DLN from its start.
FROZEN = {"teacher.output_scale": 0.0, "teacher.learning_rate": 0.0}
BASELINE_CONFIG = os.path.join(CONFIG_DIR, "mnist1d_ce.py")
DLN_CONFIG = os.path.join(CONFIG_DIR, "mnist1d_mlp.py")
REFERENCE_CONFIG = os.path.join(CONFIG_DIR, "reference_mnist1d_mlp.py")
# Issue 11's bar for the default, in accuracy points against the task's CE mean: the mean gain over
# tasks at least this, no task's gain below this, no seed below its task's CE mean by more than this.
BAR = {"mean_gain": 1.0, "worst_task_gain": -0.5, "worst_seed_gap": -3.0}
SMOKE_CE_LRS = "0.05,0.1"
# Each worker process on one thread, so that N workers share N cores without oversubscription.
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclasses.dataclass
class RunSpec:
  task: str
  name: str  # the run's directory: the method, plus _lr<rate> for a swept one
  method: str
  seed: int
  config: object  # ml_collections.ConfigDict
  workdir: str
  snapshot: bool = False  # keep the DLN at every evaluation (l2t_dln, seed 0)

  @property
  def label(self) -> str:
    return f"{self.task}/{self.name} seed {self.seed}"


def expand_tasks(text: str) -> list[str]:
  """`--tasks`: names, or a prefix of the real-image tasks' names followed by nothing else
  (`fmnist`: all of them; `fmnist_lenet`: one student's), comma-separated, in the order given."""
  tasks = []
  for item in (t for t in text.split(",") if t):
    group = (
      [t for t in REAL_IMAGE_TASKS if t.startswith(item + "_")] if item not in KNOWN_TASKS else []
    )
    tasks += [t for t in group or [item] if t not in tasks]
  return tasks


def parse_seeds(text: str | None, tasks: list[str], smoke: bool) -> dict[str, list[int]]:
  """Seeds per task: `N` for every task, `TASK=N` for one (comma-separated, later ones win)."""
  counts = {t: 1 if smoke else KNOWN_TASKS[t].seeds for t in tasks}
  for item in (text or "").split(","):
    if not item:
      continue
    task, _, n = item.rpartition("=")
    if task and task not in KNOWN_TASKS:
      raise ValueError(f"--seeds {item}: unknown task '{task}'; known: {', '.join(KNOWN_TASKS)}")
    if not n.isdigit() or int(n) < 1:
      raise ValueError(f"--seeds {item}: expected a positive number of seeds")
    for t in [task] if task else tasks:
      if t in counts:
        counts[t] = int(n)
  return {t: list(range(n)) for t, n in counts.items()}


def load_bases(dln_config: str, reference_config: str | None = None) -> dict:
  """The config files the methods start from: "baseline" (ce, ce_cosine, label_smoothing,
  l2t_dlf), "l2t_dln" and, when given, "l2t_dln_reference"."""
  bases = {"baseline": config_from_file(BASELINE_CONFIG), "l2t_dln": config_from_file(dln_config)}
  if reference_config:
    bases["l2t_dln_reference"] = config_from_file(reference_config)
  return bases


def suite_steps(bases: dict, steps: int | None, smoke: bool, task: str | None = None) -> int:
  """Student steps of every run of `task`: `steps`, else the task's own (`train.steps` among its
  overrides), else the baseline config's (the smoke config's in smoke mode)."""
  if smoke:
    return smoke_config(bases["baseline"]).train.steps
  own = KNOWN_TASKS[task].overrides.get("train.steps") if task else None
  return steps or own or bases["baseline"].train.steps


def swept_on(task: str, smoke: bool = False) -> tuple[str, ...]:
  """The methods whose rate is swept on `task` (every one of SWEPT in smoke mode)."""
  return tuple(SWEPT) if smoke else KNOWN_TASKS[task].swept


def method_config(
  method: str,
  task: str,
  seed: int,
  rate: float | None,
  *,
  bases: dict,
  overrides: list[tuple[str, object]],
  steps: int,
  smoke: bool,
):
  """One run's config: the method's config file (`bases[method]`, else `bases["baseline"]`), the
  task's overrides, l2t_dln's `overrides` (--set), the smoke shrink, the suite's `steps`, then
  what makes the method itself: its name, `rate`, schedule and validation batch."""
  from l2t_jax.config import default_config

  frozen = method == "l2t_dln_frozen"
  c = copy.deepcopy(bases.get("l2t_dln" if frozen else method, bases["baseline"]))
  for key, value in KNOWN_TASKS[task].overrides.items():
    apply_override(c, key, value)
  if smoke:
    c = smoke_config(c)
  c.train.steps = steps
  if method in SWEPT or method in AT_CE_RATE:
    c.method = "ce" if method in SWEPT else "l2t_dln" if frozen else method
    c.optim.learning_rate = rate
    changes = {**SWEPT.get(method, {}), **(FROZEN if frozen else {})}
    for key, value in {**changes, **(PLUS_VAL if method == "ce_plus_val" else {})}.items():
      apply_override(c, key, value)
  if method == "l2t_dln":  # after the rate: --set optim.learning_rate=R fixes it instead
    for key, value in overrides:
      apply_override(c, key, value)
  if method == "l2t_dlf":  # its teacher as published: the whole validation split each time, but
    # on the real images' 5000 at most DLF_VAL_BATCH (the paper configs' meta-batch)
    whole = c.data.val_size <= DLF_VAL_BATCH
    c.meta.val_batch_size = default_config().meta.val_batch_size if whole else DLF_VAL_BATCH
  c.seed = seed
  return c


def best_rate(sweep: dict[str, dict]) -> float:
  """The rate of the best mean final validation accuracy (the first listed of equals)."""
  return float(max(sweep, key=lambda lr: sweep[lr]["val_accuracy"]))


def _run_in_worker(config, workdir: str, label: str, rerun: bool, snapshot: bool):
  """One run (reused when finished); returns its summary and the line it printed."""
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    summary = run_one(config, workdir, label, rerun, snapshot=snapshot)
  return summary, printed.getvalue().strip()


def use_compilation_cache(path: str) -> None:
  """Keeps every compiled XLA program in `path` (unless this process already has a persistent
  cache, e.g. from $JAX_COMPILATION_CACHE_DIR): the seed is not part of a run's programs, so every
  seed of a task and method after the first loads them instead of compiling, which on a CPU is
  most of an MLP run's time."""
  import jax

  if not path or jax.config.jax_compilation_cache_dir:
    return
  from jax.experimental.compilation_cache import compilation_cache

  compilation_cache.reset_cache()  # (re)read the settings below at the next compilation
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _init_worker(cache: str) -> None:
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA}".strip()
  use_compilation_cache(cache)


def run_all(
  specs: list[RunSpec], on_finish, total: int, jobs: int, rerun: bool, cache: str = ""
) -> None:
  """Trains `specs` (`jobs` at a time) and the runs that `on_finish(spec, summary)` returns as
  each finishes (first in line); prints a progress line per run. `cache`: the directory of the
  persistent compilation cache ("" for none)."""
  pending = collections.deque(specs)
  count = 0

  def finish(spec: RunSpec, summary: dict, line: str) -> None:
    nonlocal count
    count += 1
    print(f"[{count}/{total}] {line}", flush=True)
    pending.extendleft(reversed(on_finish(spec, summary)))

  def failed(spec: RunSpec, error: BaseException) -> RuntimeError:
    return RuntimeError(f"{spec.label} failed ({spec.workdir}): {type(error).__name__}: {error}")

  if jobs == 1:
    use_compilation_cache(cache)
    while pending:
      spec = pending.popleft()
      try:
        result = _run_in_worker(spec.config, spec.workdir, spec.label, rerun, spec.snapshot)
      except Exception as e:
        raise failed(spec, e) from e
      finish(spec, *result)
    return

  def program(spec: RunSpec) -> tuple[str, str]:  # the runs that differ in their seed alone
    return spec.task, spec.name

  done_programs: set[tuple[str, str]] = set()

  def compiled(spec: RunSpec) -> bool:
    return program(spec) in done_programs

  context = multiprocessing.get_context("spawn")  # fresh interpreters: XLA_FLAGS read at start
  pool = concurrent.futures.ProcessPoolExecutor(
    jobs, context, initializer=_init_worker, initargs=(cache,)
  )
  running: dict[concurrent.futures.Future, RunSpec] = {}
  try:
    while pending or running:
      while len(running) < jobs:
        spec = next(
          (
            r
            for r in pending
            if compiled(r) or program(r) not in {program(q) for q in running.values()}
          ),
          None,
        )
        if spec is None:  # what is left waits for a program that a running seed compiles
          break
        pending.remove(spec)
        running[
          pool.submit(_run_in_worker, spec.config, spec.workdir, spec.label, rerun, spec.snapshot)
        ] = spec
      finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in finished:
        spec = running.pop(future)
        if future.exception() is not None:
          raise failed(spec, future.exception()) from future.exception()
        done_programs.add(program(spec))
        finish(spec, *future.result())
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def _points(x: float) -> float:
  return 100.0 * x


def method_row(
  test: list[float], val: list[float], seeds: list[int], rate: float, ce_test: list[float]
) -> dict:
  """One method on one task: accuracies per seed and how they compare with CE's (points). The
  gain's standard error is that of the seed-by-seed differences from CE (same seed, same data
  order and initialisation): what separates a gain from the scatter of seeds."""
  return {
    "test_accuracy": test,
    "val_accuracy": val,
    "seeds": seeds,
    "learning_rate": rate,
    "mean": float(np.mean(test)),
    "std": float(np.std(test, ddof=1)) if len(test) > 1 else 0.0,
    **paired_gain(test, ce_test),
    "worst_seed_gap": _points(min(test) - float(np.mean(ce_test))),
  }


def paired_gain(test: list[float], ce_test: list[float]) -> dict:
  """Accuracies (0-1) against CE's of the same seeds, in points: the gain of the mean, the standard
  error of the seed-by-seed differences (0 for one seed) and the seeds won."""
  differences = [_points(a - b) for a, b in zip(test, ce_test)]
  return {
    "gain_vs_ce": _points(float(np.mean(test)) - float(np.mean(ce_test))),
    "gain_se": (
      float(np.std(differences, ddof=1) / np.sqrt(len(differences)))
      if len(differences) > 1
      else 0.0
    ),
    "wins_vs_ce": int(sum(a > b for a, b in zip(test, ce_test))),
  }


def training_seconds(row: dict) -> float:
  """A method's wall time per run on a task without compiling (the median over its seeds): the
  seeds after the first load their programs from the compilation cache, so compile time says
  more about the cache than about the method."""
  return float(np.median(np.subtract(row["wall_seconds"], row["compile_seconds"])))


def summarise(tasks: dict[str, dict], method: str) -> dict:
  """Issue 11's three numbers for `method` over the tasks it ran on (points against CE's mean)."""
  rows = {t: r["methods"][method] for t, r in tasks.items() if method in r["methods"]}
  worst_task = min(rows, key=lambda t: rows[t]["gain_vs_ce"])
  worst_seed = min(rows, key=lambda t: rows[t]["worst_seed_gap"])
  out = {
    "mean_gain": float(np.mean([r["gain_vs_ce"] for r in rows.values()])),
    "mean_gain_se": float(np.sqrt(sum(r["gain_se"] ** 2 for r in rows.values())) / len(rows)),
    "worst_task_gain": rows[worst_task]["gain_vs_ce"],
    "worst_task": worst_task,
    "worst_seed_gap": rows[worst_seed]["worst_seed_gap"],
    "worst_seed_task": worst_seed,
    "worst_seed": rows[worst_seed]["seeds"][int(np.argmin(rows[worst_seed]["test_accuracy"]))],
    "tasks": len(rows),
  }
  out["meets_bar"] = all(out[k] >= bar for k, bar in BAR.items())
  return out


def format_table(report: dict, methods: list[str]) -> str:
  tasks = report["tasks"]
  lines = [
    "Mean test accuracy (%) over seeds; beside it the gain over CE's mean (points) +- the "
    "standard error of the seed-by-seed differences from CE, and the seeds won against CE's seed.",
    "",
    "| task | " + " | ".join(methods) + " |",
    "|---" * (len(methods) + 1) + "|",
  ]
  for name, task in tasks.items():
    cells = []
    for method in methods:
      m = task["methods"].get(method)
      if m is None:
        cells.append("not run")
      elif method == "ce":
        cells.append(f"{_points(m['mean']):.2f} (lr {m['learning_rate']:g})")
      else:
        cells.append(
          f"{_points(m['mean']):.2f} ({m['gain_vs_ce']:+.2f} +- {m['gain_se']:.2f}, "
          f"{m['wins_vs_ce']}/{len(m['seeds'])})"
        )
    n = len(task["seeds"])
    lines.append(f"| {name} ({n} seed{'s' if n > 1 else ''}) | " + " | ".join(cells) + " |")
  summary = report["summary"]
  lines.append(
    "| mean gain over the tasks it ran on | "
    + " | ".join(
      "-"
      if m == "ce"
      else f"{summary[m]['mean_gain']:+.2f} +- {summary[m]['mean_gain_se']:.2f} "
      f"({summary[m]['tasks']})"
      for m in methods
    )
    + " |"
  )
  bar = ", ".join(f"{k.replace('_', ' ')} >= {v:+.1f}" for k, v in BAR.items())
  lines += [
    "",
    f"Issue 11's numbers (points against the task's CE mean; the bar: {bar}):",
    "",
    "| method | mean gain | worst task's gain | worst seed's gap | meets the bar |",
    "|---|---|---|---|---|",
  ]
  for method in methods:
    if method == "ce":
      continue
    s = summary[method]
    lines.append(
      f"| {method} | {s['mean_gain']:+.2f} | {s['worst_task_gain']:+.2f} "
      f"({s['worst_task']}) | {s['worst_seed_gap']:+.2f} ({s['worst_seed_task']} seed "
      f"{s['worst_seed']}) | {'yes' if s['meets_bar'] else 'no'} |"
    )
  lines += [
    "",
    "Wall time of a run (s, median over seeds, compiling excluded) and its ratio to CE's:",
    "",
    "| task | " + " | ".join(methods) + " |",
    "|---" * (len(methods) + 1) + "|",
  ]
  for name, task in tasks.items():
    cells = [
      "not run"
      if (m := task["methods"].get(method)) is None or "wall_seconds" not in m
      else f"{training_seconds(m):.1f} ({m['cost_vs_ce']:.2f}x)"
      for method in methods
    ]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  for sweep in ("ce_sweep", "ce_cosine_sweep"):
    rates = sorted({lr for t in tasks.values() for lr in t.get(sweep, {})}, key=float)
    if not rates:
      continue
    lines += [
      "",
      f"{sweep.replace('_', ' ')}: mean final validation accuracy (%) per rate (chosen in bold):",
      "",
      "| task | " + " | ".join(rates) + " |",
      "|---" * (len(rates) + 1) + "|",
    ]
    for name, task in tasks.items():
      table = task.get(sweep, {})
      chosen = best_rate(table) if table else None
      cells = [
        ""
        if lr not in table
        else (
          f"**{_points(table[lr]['val_accuracy']):.2f}**"
          if float(lr) == chosen
          else f"{_points(table[lr]['val_accuracy']):.2f}"
        )
        for lr in rates
      ]
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_gains(report: dict, methods: list[str], path: str, title: str) -> None:
  """Per task, each method's seeds as dots and its mean as a bar, in points over CE's mean."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  tasks = list(report["tasks"])
  fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(tasks)) + 2.5, 5))
  width = 0.8 / len(methods)
  for j, method in enumerate(methods):
    colour = f"C{j}"
    for i, task in enumerate(tasks):
      t = report["tasks"][task]
      m = t["methods"].get(method)
      if m is None:
        continue
      ce_mean = t["methods"]["ce"]["mean"]
      x = i - 0.4 + (j + 0.5) * width
      gains = [_points(a - ce_mean) for a in m["test_accuracy"]]
      ax.scatter(
        np.full(len(gains), x),
        gains,
        s=14,
        color=colour,
        alpha=0.7,
        label=method
        if task == next(k for k in tasks if method in report["tasks"][k]["methods"])
        else None,
      )
      ax.hlines(m["gain_vs_ce"], x - width / 2, x + width / 2, color=colour, lw=2.5)
  ax.axhline(0.0, color="k", lw=0.8)
  ax.axhline(
    BAR["worst_seed_gap"],
    color="k",
    lw=0.8,
    ls=":",
    label=f"issue 11: no seed below ({BAR['worst_seed_gap']:+g})",
  )
  ax.set_xticks(range(len(tasks)), tasks, rotation=20)
  ax.set_ylabel("test accuracy - CE's mean (points)")
  ax.set_title(title)
  ax.grid(axis="y", alpha=0.3)
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, not over, the dots
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument(
    "--tasks",
    default=",".join(TASKS),
    help=f"comma-separated, of {list(TASKS)} (the default) and the held-out {list(HELD_OUT_TASKS)}",
  )
  parser.add_argument(
    "--methods", default=",".join(METHODS), help=f"comma-separated, of {METHODS}; ce is always run"
  )
  parser.add_argument(
    "--seeds", default=None, help="N (seeds 0..N-1 on every task) and/or TASK=N, comma-separated"
  )
  parser.add_argument(
    "--steps",
    type=int,
    default=None,
    help="student steps of every run (default: configs/mnist1d_ce.py's)",
  )
  parser.add_argument(
    "--ce_lrs",
    default=None,
    help="rates of the CE and CE-cosine sweeps on every task (default 0.03,0.05,0.1,0.15,0.2, "
    "and a task's own where it has one)",
  )
  parser.add_argument("--dln_config", default=DLN_CONFIG, help="l2t_dln's config file")
  parser.add_argument(
    "--reference_config", default=REFERENCE_CONFIG, help="l2t_dln_reference's config file"
  )
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override of l2t_dln's config (repeatable; a Python literal)",
  )
  parser.add_argument(
    "--tag",
    default="",
    help="l2t_dln's runs in OUT/runs/<task>/l2t_dln_TAG, outputs with suffix _TAG",
  )
  parser.add_argument(
    "--data_dir",
    default="",
    help="where the real-image tasks' data is (default: the dataset's own, e.g. Debian's "
    "/usr/share/datasets/fashion-mnist)",
  )
  parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time (processes)")
  parser.add_argument(
    "--compilation_cache",
    default=None,
    help="persistent XLA compilation cache shared by the runs (default "
    "OUT/xla_cache; 'none' to compile every run anew)",
  )
  parser.add_argument("--rerun", action="store_true", help="train every run anew")
  parser.add_argument(
    "--smoke",
    action="store_true",
    help="every run in four steps on a few examples, one seed, two rates",
  )
  scheduler.add_arguments(parser)
  args = parser.parse_args(argv)
  command = shlex.join(
    [
      sys.argv[0] if argv is None else "benchmarks/suite.py",
      *(sys.argv[1:] if argv is None else argv),
    ]
  )

  tasks = expand_tasks(args.tasks)
  methods = [m for m in args.methods.split(",") if m]
  for given, known, flag in ((tasks, KNOWN_TASKS, "--tasks"), (methods, METHODS, "--methods")):
    unknown = [x for x in given if x not in known]
    if unknown:
      parser.error(f"{flag}: unknown {unknown}; known: {list(known)}")
  methods = [m for m in METHODS if m in methods or m == "ce"]
  if args.jobs < 1:
    parser.error("--jobs must be >= 1")
  ce_lrs = [
    float(x)
    for x in (args.ce_lrs or (SMOKE_CE_LRS if args.smoke else "0.03,0.05,0.1,0.15,0.2")).split(",")
  ]
  own_lrs = not (args.ce_lrs or args.smoke)  # --ce_lrs, when given, is every task's sweep
  lrs = {
    t: list(KNOWN_TASKS[t].ce_lrs) if own_lrs and KNOWN_TASKS[t].ce_lrs else ce_lrs for t in tasks
  }
  on_task = {t: [m for m in methods if args.smoke or m not in KNOWN_TASKS[t].skip] for t in tasks}
  try:
    seeds = parse_seeds(args.seeds, tasks, args.smoke)
    overrides = [parse_override(text) for text in args.set]
  except ValueError as e:
    parser.error(str(e))
  if "l2t_dln_reference" in methods and not os.path.exists(args.reference_config):
    parser.error(
      f"l2t_dln_reference: its config {args.reference_config} does not exist (the "
      "authors' protocol as a config of the library); leave the method out with "
      "--methods or name the file with --reference_config"
    )
  bases = load_bases(
    args.dln_config, args.reference_config if "l2t_dln_reference" in methods else None
  )
  steps = {t: suite_steps(bases, args.steps, args.smoke, t) for t in tasks}

  if bases["l2t_dln"].method != "l2t_dln":
    parser.error(
      f"--dln_config {args.dln_config}: method='{bases['l2t_dln'].method}', expected 'l2t_dln'"
    )
  from l2t_jax.config import ConfigError, validate

  def config_for(method: str, task: str, seed: int, rate: float | None = None):
    c = method_config(
      method,
      task,
      seed,
      rate,
      bases=bases,
      overrides=overrides,
      steps=steps[task],
      smoke=args.smoke,
    )
    if args.data_dir and c.data.name not in ("mnist1d", "digits"):
      c.data.data_dir = args.data_dir
    return c

  try:  # every config, checked before the first run starts
    for task in tasks:
      for method in on_task[task]:
        validate(config_for(method, task, 0, ce_lrs[0]))
  except (ConfigError, ValueError, TypeError, KeyError) as e:
    parser.error(f"{method} on {task}: the config does not work: {e}")

  suffix = f"_{args.tag}" if args.tag else ""
  dirname = {"l2t_dln": f"l2t_dln{suffix}"}
  out = args.out
  os.makedirs(out, exist_ok=True)

  swept = {t: swept_on(t, args.smoke) for t in tasks}

  def spec(task: str, method: str, seed: int, rate: float | None = None) -> RunSpec:
    name = f"{method}_lr{rate:g}" if method in SWEPT else dirname.get(method, method)
    return RunSpec(
      task,
      name,
      method,
      seed,
      config_for(method, task, seed, rate),
      os.path.join(out, "runs", task, name, f"seed{seed}"),
      snapshot=method == "l2t_dln" and seed == 0,
    )

  def seed_major(specs: list[RunSpec]) -> list[RunSpec]:
    """Every program's first seed before any second one: the later seeds then load the programs
    from the compilation cache, also when several runs train at a time."""
    return sorted(specs, key=lambda r: r.seed)  # (stable: the order given within a seed)

  first = []  # task by task, the CE sweep first: the other baselines wait for its rate
  for task in tasks:
    runs = [spec(task, "ce", s, lr) for lr in lrs[task] for s in seeds[task]]
    if "l2t_dln_reference" in on_task[task]:  # its own rate: runs beside the sweep
      runs += [spec(task, "l2t_dln_reference", s) for s in seeds[task]]
    if "ce_cosine" in on_task[task] and "ce_cosine" in swept[task]:
      runs += [spec(task, "ce_cosine", s, lr) for lr in lrs[task] for s in seeds[task]]
    first += seed_major(runs)
  later = {  # per task, the methods trained at CE's chosen rate (a swept one that is not swept here)
    t: [m for m in on_task[t] if m in AT_CE_RATE or (m in SWEPT and m not in swept[t])]
    for t in tasks
  }
  total = len(first) + sum(len(later[t]) * len(seeds[t]) for t in tasks)

  done: dict[tuple, dict] = {}
  rates: dict[tuple[str, str], float] = {}

  def sweep_table(task: str, method: str) -> dict[str, dict]:
    return {
      f"{lr:g}": {
        key: float(np.mean([done[(task, f"{method}_lr{lr:g}", s)][key] for s in seeds[task]]))
        for key in ("val_accuracy", "test_accuracy")
      }
      for lr in lrs[task]
    }

  def on_finish(finished: RunSpec, summary: dict) -> list[RunSpec]:
    """Records the run; once a task's sweep is complete, picks its rate and (CE) returns the
    runs that train at it."""
    done[(finished.task, finished.name, finished.seed)] = summary
    task = finished.task
    if finished.method not in swept[task] or any(
      (task, f"{finished.method}_lr{lr:g}", s) not in done for lr in lrs[task] for s in seeds[task]
    ):
      return []
    table = sweep_table(task, finished.method)
    rates[(task, finished.method)] = best_rate(table)
    if finished.method != "ce":
      return []
    return seed_major(
      [spec(task, m, s, rates[(task, "ce")]) for m in later[task] for s in seeds[task]]
    )

  print(
    f"suite: tasks {tasks}, methods {methods}, {steps} steps, seeds "
    f"{ {t: len(s) for t, s in seeds.items()} }, CE rates {lrs}, {total} runs, "
    f"{args.jobs} at a time" + (" (smoke)" if args.smoke else ""),
    flush=True,
  )
  cache = args.compilation_cache or os.path.join(out, "xla_cache")
  cache = "" if cache == "none" else cache
  if args.executor == "pool":
    run_all(first, on_finish, total, args.jobs, args.rerun, cache)
  elif not scheduler.run_all(
    first,
    on_finish,
    total,
    args,
    out,
    job=lambda r: (_run_in_worker, (r.config, r.workdir, r.label, args.rerun, r.snapshot)),
    finished=lambda r: not args.rerun and finished_summary(r.workdir, r.config) is not None,
    init=(_init_worker, (cache,)),
  ):
    return {}  # --detach: the same command collects the sweep

  report_tasks = {}
  for task in tasks:
    ce_test = [
      done[(task, f"ce_lr{rates[(task, 'ce')]:g}", s)]["test_accuracy"] for s in seeds[task]
    ]
    rows, sweeps = {}, {}
    for method in on_task[task]:
      if method in swept[task]:
        sweeps[f"{method}_sweep"] = sweep_table(task, method)
        rate = rates[(task, method)]
        name = f"{method}_lr{rate:g}"
      elif method in SWEPT:  # trained at CE's chosen rate
        rate = rates[(task, "ce")]
        name = f"{method}_lr{rate:g}"
      else:
        name = dirname.get(method, method)
        rate = spec(task, method, 0, rates[(task, "ce")]).config.optim.learning_rate
      summaries = [done[(task, name, s)] for s in seeds[task]]
      rows[method] = method_row(
        [r["test_accuracy"] for r in summaries],
        [r["val_accuracy"] for r in summaries],
        seeds[task],
        rate,
        ce_test,
      )
      rows[method]["wall_seconds"] = [r["wall_seconds"] for r in summaries]
      rows[method]["compile_seconds"] = [r["compile_seconds"] for r in summaries]
      rows[method]["runs"] = os.path.join("runs", task, name)
    ce_run = training_seconds(rows["ce"])
    for row in rows.values():
      row["cost_vs_ce"] = training_seconds(row) / ce_run if ce_run > 0 else float("nan")
    report_tasks[task] = {
      "title": KNOWN_TASKS[task].title,
      "overrides": KNOWN_TASKS[task].overrides,
      "steps": steps[task],
      "seeds": seeds[task],
      "methods": rows,
      **sweeps,
      "not_run": [m for m in methods if m not in on_task[task]],
    }
  report = {
    "tasks": report_tasks,
    "summary": {  # over the tasks each method ran on (none: no summary)
      m: summarise(report_tasks, m)
      for m in methods
      if m != "ce" and any(m in t["methods"] for t in report_tasks.values())
    },
    "config": {
      "steps": steps,
      "swept": swept,
      "ce_lrs": lrs,
      "methods": methods,
      "tasks": tasks,
      "baseline_config": os.path.relpath(BASELINE_CONFIG),
      "dln_config": args.dln_config,
      "set": args.set,
      "tag": args.tag,
      "reference_config": args.reference_config if "l2t_dln_reference" in methods else None,
      "smoke": args.smoke,
      "command": command,
    },
  }

  written = [
    os.path.join(out, f"results{suffix}.json"),
    os.path.join(out, f"table{suffix}.md"),
    os.path.join(out, f"gain{suffix}.png"),
  ]
  lengths = sorted(set(steps.values()))
  shown = [m for m in methods if m == "ce" or m in report["summary"]]  # those that ran somewhere
  table = write_report(
    *written[:2],
    report,
    f"Task suite: {' or '.join(map(str, lengths))} student steps per run"
    + (" (smoke)" if args.smoke else ""),
    format_table(report, shown),
  )
  plot_gains(
    report,
    shown,
    written[2],
    f"Gain over tuned cross-entropy per task ({' or '.join(map(str, lengths))} steps"
    + (f", l2t_dln: {args.tag})" if args.tag else ")"),
  )
  if "l2t_dln" in methods:
    for task in tasks:
      if 0 not in seeds[task]:
        continue
      path = os.path.join(out, f"learned_loss_{task}{suffix}.png")
      plot_learned_loss(
        config_for("l2t_dln", task, 0).dln,
        load_snapshots(os.path.join(out, "runs", task, dirname["l2t_dln"], "seed0")),
        path,
        f"The DLN of the l2t_dln run of seed 0 ({KNOWN_TASKS[task].title})",
      )
      written.append(path)
  print("\n" + table)
  if "l2t_dln" in report["summary"]:
    s = report["summary"]["l2t_dln"]
    print(
      f"l2t_dln: mean gain over tasks {s['mean_gain']:+.2f} +- {s['mean_gain_se']:.2f} points "
      f"(bar {BAR['mean_gain']:+.1f}),"
      f" worst task {s['worst_task']} {s['worst_task_gain']:+.2f} (bar "
      f"{BAR['worst_task_gain']:+.1f}), worst seed {s['worst_seed_task']} seed "
      f"{s['worst_seed']} {s['worst_seed_gap']:+.2f} (bar {BAR['worst_seed_gap']:+.1f}): "
      + ("meets the bar" if s["meets_bar"] else "does not meet the bar")
    )
  print("wrote " + ", ".join(written))
  return report


if __name__ == "__main__":
  main()
