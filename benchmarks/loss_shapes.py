"""Fixed reshapings of cross-entropy against cross-entropy itself, paired by seed, on the task
suite's MLP tasks.

On clean MNIST-1D the learned loss (L2T-DLN) only ties tuned cross-entropy (benchmarks/suite.py).
This asks whether any *fixed* change of CE's shape does better there, or whether CE is already a
local optimum among such shapes: each shape below trains the suite's CE run of a task (the
baseline config, configs/mnist1d_ce.py, with the task's overrides, at the rate the suite chose for
CE on it) with only the loss swapped: the same student, initialisation, batches, optimizer,
schedule and steps (`train_shape`, built from `l2t_jax.train.build_run`). Every shape of a seed
starts from the same network and sees the same batches as CE's run of that seed, so each shape's
gain over CE is measured seed by seed: the mean difference, its standard error over seeds, and the
seeds won.

  python benchmarks/loss_shapes.py --seeds 10 --out out/loss_shapes
  python benchmarks/loss_shapes.py --tasks mnist1d,digits --shapes ce,margin:1,poly:-0.5 --out out/x
  python benchmarks/loss_shapes.py --smoke --out /tmp/loss_shapes_smoke

Shapes (`--shapes`, NAME:PARAM items; a per-sample loss of the logits z and the label y, averaged
over the batch):
  ce                 cross-entropy, the baseline (always run)
  temperature:T      T * CE(z / T)
  margin:m           CE(z - m * onehot(y)): the true class must win by m (additive margin)
  poly:eps           CE + eps * (1 - p_y) (PolyLoss, Leng et al. 2022)
  focal:gamma        -(1 - p_y)^gamma log p_y (l2t_jax.losses.focal)
  label_smoothing:s  CE against targets smoothed by s (l2t_jax.losses.label_smoothing)
Tasks (`--tasks`): those of benchmarks/suite.py whose student is the MLP; rates (`--rates
TASK=R,...`): the ones the suite's CE sweep picked (benchmarks/results/suite/results.json).

Each run is kept as OUT/runs/<task>/<shape>/seed<k>.json and reused when run again with the same
config (--rerun trains anew); the runs share a persistent XLA compilation cache (OUT/xla_cache),
so that a program is compiled once, not once per seed. Writes OUT/results.json ({"tasks": {TASK:
{"rate", "seeds", "shapes": {SHAPE: {"test_accuracy": [per seed, 0-1], "val_accuracy",
"gain_vs_ce", "gain_se", "wins_vs_ce", ...}}}}, "summary": {SHAPE: its mean gain over the
tasks}, "config"}), OUT/table.md (also printed: shapes as rows, tasks as columns, gain over CE in
points +- its standard error, seeds won) and OUT/gain.png (one panel per task: each shape's
seed-by-seed gains as dots, their mean and standard error). --smoke: one seed, two shapes, the
smoke config's four steps on a few examples: the whole code path in seconds, for the tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import suite
from benchmarks.common import ROOT, config_from_file, write_report

# The suite's MLP tasks, with their overrides of the baseline config.
TASKS = {
  name: task
  for name, task in suite.TASKS.items()
  if task.overrides.get("student.name", "mlp") == "mlp"
}
# CE's rate per task: the best mean final validation accuracy of the suite's CE sweep over
# 0.03, 0.05, 0.1 and 0.2 (benchmarks/results/suite/results.json, "ce_sweep").
RATES = {
  "mnist1d": 0.1,
  "mnist1d_gen0": 0.1,
  "mnist1d_gen1": 0.1,
  "mnist1d_1k": 0.2,
  "mnist1d_noise40": 0.05,
  "digits": 0.2,
}
DEFAULT_SHAPES = (
  "ce",
  "temperature:0.5",
  "temperature:2",
  "margin:1",
  "poly:-1",
  "poly:1",
  "focal:2",
  "label_smoothing:0.1",
)
SMOKE_SHAPES = "ce,margin:1"
DEFAULT_SEEDS = 10
BASELINE = "ce"

# name: (what its parameter must satisfy, the message when it does not)
_PARAM_RULES = {
  "temperature": (lambda t: t > 0, "must be > 0"),
  "margin": (math.isfinite, "must be finite"),
  "poly": (math.isfinite, "must be finite"),
  "focal": (lambda g: g >= 0, "must be >= 0"),
  "label_smoothing": (lambda s: 0 <= s < 1, "must lie in [0, 1)"),
}


def _per_sample_ce(logits, labels):
  import optax

  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def shape_loss(shape: str) -> Callable:
  """`loss(logits, labels) -> scalar` (the mean over the batch) of a shape named as `--shapes`
  takes it: "ce" or "NAME:PARAM" (module docstring)."""
  import jax

  from l2t_jax import losses

  name, param = parse_shape(shape)
  if name == "ce":
    return losses.cross_entropy
  if name == "temperature":
    return lambda z, y: param * losses.cross_entropy(z / param, y)
  if name == "margin":
    return lambda z, y: losses.cross_entropy(
      z - param * jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype), y
    )
  if name == "poly":

    def poly(z, y):
      ce = _per_sample_ce(z, y)
      return (ce + param * (1.0 - jax.numpy.exp(-ce))).mean()

    return poly
  if name == "focal":
    return lambda z, y: losses.focal(z, y, param)
  return lambda z, y: losses.label_smoothing(z, y, param)


def parse_shape(shape: str) -> tuple[str, float | None]:
  """("ce", None) or (NAME, PARAM) of "NAME:PARAM"; ValueError naming the problem otherwise."""
  name, colon, text = shape.partition(":")
  if name == "ce":
    if colon:
      raise ValueError(f"shape '{shape}': ce takes no parameter; write 'ce'")
    return name, None
  if name not in _PARAM_RULES:
    raise ValueError(f"shape '{shape}': unknown; known: ce, {', '.join(_PARAM_RULES)}")
  try:
    param = float(text)
  except ValueError:
    raise ValueError(f"shape '{shape}': expected {name}:NUMBER, e.g. {name}:1") from None
  ok, rule = _PARAM_RULES[name]
  if not ok(param):
    raise ValueError(f"shape '{shape}': the parameter of {name} {rule}")
  return name, param


def canonical(shape: str) -> str:
  """The shape's name as results are keyed: 'temperature:2.0' and 'temperature:2' are one."""
  name, param = parse_shape(shape)
  return name if param is None else f"{name}:{param:g}"


def train_shape(config, loss: Callable, dataset=None):
  """`config`'s run (a fixed-loss method's: its student, initialisation, batches, optimizer,
  schedule and steps, as `l2t_jax.train.train` builds them) with the student trained on `loss(
  logits, labels)` instead of the config's loss; all the steps in one jitted `lax.scan` over the
  method's cycles. Returns ({"test_accuracy", "val_accuracy" (final, 0-1), "train_ce" (mean over
  the last train.log_every steps), "diverged_at_step" (the last step of the first cycle whose loss
  was not finite, or None), "seconds"}, the final `TrainState`)."""
  import jax
  import jax.numpy as jnp

  from l2t_jax import build, methods, parallel
  from l2t_jax import train as train_lib
  from l2t_jax.config import META_METHODS, ConfigError
  from l2t_jax.data.sampler import TRAIN_STREAM, batch_indices

  start = time.time()
  if config.method in META_METHODS:
    raise ConfigError(f"method='{config.method}': train_shape swaps the loss of a fixed-loss run")
  run = train_lib.build_run(config, dataset)
  if run.parallel.size != 1:
    raise ConfigError(
      f"train_shape runs on one device and {run.parallel.size} are selected: set parallel.devices=1"
    )
  cfg, ds = run.config, run.dataset
  segments = build.make_segments(cfg, run.student, run.optimizer, ds.num_classes)
  method = methods.fixed_loss_method(cfg.method, segments, lambda _, z, y: loss(z, y))
  interval, steps = cfg.meta.interval, cfg.train.steps
  train_idx = batch_indices(
    cfg.seed, TRAIN_STREAM, len(ds.train), cfg.train.batch_size, 0, steps
  ).reshape(steps // interval, interval, -1)
  val_idx = jnp.zeros((1,), jnp.int32)  # fixed losses read no validation batch

  def all_cycles(state, data, train_idx):
    def body(state, idx):
      state, metrics = method.cycle(state, data, idx, val_idx)
      return state, (metrics.train_ce, metrics.nonfinite_loss)

    return jax.lax.scan(body, state, train_idx)

  options = parallel.FAST_COMPILER_OPTIONS if cfg.train.fast_compile else None
  state = method.init(jax.random.PRNGKey(cfg.seed), jnp.asarray(ds.train.x[:1]))
  state, (train_ce, nonfinite) = jax.jit(all_cycles, donate_argnums=0, compiler_options=options)(
    state, train_lib.device_data(ds, cfg.data.split), train_idx
  )
  train_ce, nonfinite = np.asarray(train_ce), np.asarray(nonfinite)
  params, model_state = state.student.params, state.student.model_state
  bad = np.flatnonzero(nonfinite)
  last = max(1, cfg.train.log_every // interval)
  summary = {
    "test_accuracy": run.evaluate(params, model_state, ds.test.x, ds.test.y)["accuracy"],
    "val_accuracy": run.evaluate(params, model_state, ds.val.x, ds.val.y)["accuracy"],
    "train_ce": float(train_ce[-last:].mean()),
    "diverged_at_step": int((bad[0] + 1) * interval) if bad.size else None,
    "seconds": time.time() - start,
  }
  return summary, state


def task_config(task: str, rate: float, seed: int, smoke: bool):
  """The suite's CE run of `task` at `rate` and `seed` (benchmarks/suite.py `method_config`)."""
  bases = {"baseline": config_from_file(suite.BASELINE_CONFIG)}
  steps = suite.suite_steps(bases, None, smoke)
  return suite.method_config(
    "ce", task, seed, rate, bases=bases, overrides=[], steps=steps, smoke=smoke
  )


def run_shape(task: str, shape: str, config, out: str, rerun: bool) -> dict:
  """The result of one run, reused from OUT/runs/<task>/<shape>/seed<k>.json when that file
  holds this shape and config; prints one line."""
  from l2t_jax.metrics import write_json_atomic

  path = os.path.join(out, "runs", task, shape.replace(":", "_"), f"seed{config.seed}.json")
  wanted = {"shape": shape, "config": json.loads(config.to_json())}
  label = f"{task}/{shape} seed {config.seed}"
  if not rerun and os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    if {k: stored.get(k) for k in wanted} == wanted:
      print(f"{label:<40} test acc {stored['test_accuracy']:.4f}  (reused)", flush=True)
      return stored
  summary, _ = train_shape(config, shape_loss(shape))
  result = {**wanted, **summary}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_json_atomic(path, result)
  diverged = result["diverged_at_step"]
  print(
    f"{label:<40} test acc {result['test_accuracy']:.4f}  ({result['seconds']:.1f} s)"
    + (f"  DIVERGED at step {diverged}" if diverged is not None else ""),
    flush=True,
  )
  return result


def shape_row(results: list[dict], ce: list[dict]) -> dict:
  """One shape on one task: per-seed results and the seed-by-seed comparison with CE."""
  test = [r["test_accuracy"] for r in results]
  val = [r["val_accuracy"] for r in results]
  row = {
    "test_accuracy": test,
    "val_accuracy": val,
    "train_ce": [r["train_ce"] for r in results],
    "diverged_at_step": [r["diverged_at_step"] for r in results],
    "mean": float(np.mean(test)),
    "val_mean": float(np.mean(val)),
    "seconds": [r["seconds"] for r in results],
  }
  ce_test = [r["test_accuracy"] for r in ce]
  row.update(suite.paired_gain(test, ce_test))
  row["ties_vs_ce"] = int(sum(a == b for a, b in zip(test, ce_test)))
  row["val_gain_vs_ce"] = float(100.0 * (np.mean(val) - np.mean([r["val_accuracy"] for r in ce])))
  return row


def summarise(tasks: dict, shape: str) -> dict:
  """A shape's gain over CE averaged over the tasks (its s.e. from the tasks' own), and the tasks
  where it gained and lost by more than twice its standard error."""
  rows = [t["shapes"][shape] for t in tasks.values()]
  return {
    "mean_gain": float(np.mean([r["gain_vs_ce"] for r in rows])),
    "mean_gain_se": float(np.sqrt(sum(r["gain_se"] ** 2 for r in rows)) / len(rows)),
    "tasks_above": [n for n, t in tasks.items() if _beyond(t["shapes"][shape], +1)],
    "tasks_below": [n for n, t in tasks.items() if _beyond(t["shapes"][shape], -1)],
  }


def _beyond(row: dict, sign: int) -> bool:
  return sign * row["gain_vs_ce"] > 2 * row["gain_se"] and row["gain_se"] > 0


def format_table(report: dict) -> str:
  tasks, shapes = report["tasks"], report["config"]["shapes"]
  n = sorted({len(t["seeds"]) for t in tasks.values()})
  lines = [
    "Gain of each shape over cross-entropy in test accuracy (points), paired by seed (same "
    "initialisation and batches): the mean difference +- its standard error over seeds, and the "
    f"seeds won; {'/'.join(map(str, n))} seeds per task. First row: CE's mean test accuracy (%).",
    "",
    "| shape | " + " | ".join(f"{t} (lr {tasks[t]['rate']:g})" for t in tasks) + " | mean |",
    "|---" * (len(tasks) + 2) + "|",
    "| ce | "
    + " | ".join(f"{100 * t['shapes'][BASELINE]['mean']:.2f}" for t in tasks.values())
    + " | - |",
  ]
  for shape in shapes:
    if shape == BASELINE:
      continue
    cells = []
    for t in tasks.values():
      r = t["shapes"][shape]
      diverged = sum(s is not None for s in r["diverged_at_step"])
      cells.append(
        f"{r['gain_vs_ce']:+.2f} +- {r['gain_se']:.2f} ({r['wins_vs_ce']}/{len(t['seeds'])})"
        + (f" {diverged} diverged" if diverged else "")
      )
    s = report["summary"][shape]
    lines.append(
      f"| {shape} | " + " | ".join(cells) + f" | {s['mean_gain']:+.2f} +- {s['mean_gain_se']:.2f} |"
    )
  lines += [
    "",
    "Final training cross-entropy (of the logits as they are, whatever the shape trained on; the "
    "mean over the last train.log_every steps, median over seeds): where it is high, training did "
    "not settle at this rate.",
    "",
    "| shape | " + " | ".join(tasks) + " |",
    "|---" * (len(tasks) + 1) + "|",
  ]
  for shape in shapes:
    cells = [f"{np.median(t['shapes'][shape]['train_ce']):.3g}" for t in tasks.values()]
    lines.append(f"| {shape} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_gains(report: dict, path: str, title: str) -> None:
  """One panel per task: each shape's gain over CE per seed (dots), their mean (bar) and its
  standard error (whisker)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  tasks = report["tasks"]
  shapes = [s for s in report["config"]["shapes"] if s != BASELINE]
  cols = min(3, len(tasks))
  rows = -(-len(tasks) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False, sharex=True)
  x = np.arange(len(shapes))
  for ax, (name, task) in zip(axes.flat, tasks.items()):
    for i, shape in enumerate(shapes):
      r = task["shapes"][shape]
      gains = 100.0 * (np.asarray(r["test_accuracy"]) - task["shapes"][BASELINE]["test_accuracy"])
      jitter = np.linspace(-0.15, 0.15, len(gains)) if len(gains) > 1 else np.zeros(1)
      ax.scatter(i + jitter, gains, s=10, color=f"C{i}", alpha=0.6)
      ax.errorbar(i, r["gain_vs_ce"], yerr=r["gain_se"], color="k", capsize=3, lw=1)
      ax.hlines(r["gain_vs_ce"], i - 0.3, i + 0.3, color=f"C{i}", lw=2.5)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_title(f"{name} (CE {100 * task['shapes'][BASELINE]['mean']:.1f} %)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xticks(x, shapes, rotation=45, ha="right", fontsize=8)
  for ax in axes.flat[len(tasks) :]:
    ax.set_visible(False)
  for ax in axes[:, 0]:
    ax.set_ylabel("test acc. - CE's, same seed (points)", fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def parse_rates(text: str | None, tasks: list[str]) -> dict[str, float]:
  """CE's rate per task: `RATES`, with `TASK=R` items (comma-separated) replacing some."""
  rates = {t: RATES[t] for t in tasks}
  for item in (text or "").split(","):
    if not item:
      continue
    task, eq, value = item.partition("=")
    if not eq or task not in TASKS:
      raise ValueError(f"--rates {item}: expected TASK=RATE with TASK one of {list(TASKS)}")
    try:
      rate = float(value)
    except ValueError:
      raise ValueError(f"--rates {item}: the rate is not a number") from None
    if not rate > 0:
      raise ValueError(f"--rates {item}: the rate must be > 0")
    if task in rates:
      rates[task] = rate
  return rates


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {list(TASKS)}")
  parser.add_argument(
    "--shapes",
    default=None,
    help=f"comma-separated NAME:PARAM (default {','.join(DEFAULT_SHAPES)}); ce is always run",
  )
  parser.add_argument(
    "--rates",
    default=None,
    help=f"TASK=RATE items replacing CE's rate on a task (default {RATES})",
  )
  parser.add_argument(
    "--seeds", type=int, default=None, help=f"seeds 0..N-1 on every task (default {DEFAULT_SEEDS})"
  )
  parser.add_argument("--rerun", action="store_true", help="train every run anew")
  parser.add_argument(
    "--smoke", action="store_true", help="one seed, two shapes, four steps on a few examples"
  )
  args = parser.parse_args(argv)
  command = shlex.join(
    [
      sys.argv[0] if argv is None else "benchmarks/loss_shapes.py",
      *(sys.argv[1:] if argv is None else argv),
    ]
  )
  tasks = [t for t in args.tasks.split(",") if t]
  unknown = [t for t in tasks if t not in TASKS]
  if unknown or not tasks:
    parser.error(f"--tasks: unknown {unknown}; known: {list(TASKS)}")
  try:
    given = (args.shapes or (SMOKE_SHAPES if args.smoke else ",".join(DEFAULT_SHAPES))).split(",")
    shapes = [canonical(s) for s in given if s]
    rates = parse_rates(args.rates, tasks)
  except ValueError as e:
    parser.error(str(e))
  shapes = list(dict.fromkeys([BASELINE, *shapes]))  # ce first, each once
  n_seeds = args.seeds or (1 if args.smoke else DEFAULT_SEEDS)
  if n_seeds < 1:
    parser.error("--seeds must be >= 1")
  seeds = list(range(n_seeds))
  from l2t_jax.config import ConfigError, validate

  try:  # every config, checked before the first run
    for task in tasks:
      validate(task_config(task, rates[task], 0, args.smoke))
  except (ConfigError, ValueError, KeyError) as e:
    parser.error(f"{task}: the config does not work: {e}")

  out = args.out
  os.makedirs(out, exist_ok=True)
  suite.use_compilation_cache(os.path.join(out, "xla_cache"))
  total = len(tasks) * len(shapes) * len(seeds)
  print(
    f"loss_shapes: tasks {tasks}, shapes {shapes}, {len(seeds)} seeds, CE rates {rates}, "
    f"{total} runs" + (" (smoke)" if args.smoke else ""),
    flush=True,
  )
  started = time.time()
  done: dict[tuple[str, str, int], dict] = {}
  for task in tasks:
    for seed in seeds:  # seed-major: a program's first seed compiles it, the others load it
      config = task_config(task, rates[task], seed, args.smoke)
      for shape in shapes:
        done[(task, shape, seed)] = run_shape(task, shape, config, out, args.rerun)

  report_tasks = {}
  for task in tasks:
    ce = [done[(task, BASELINE, s)] for s in seeds]
    report_tasks[task] = {
      "title": TASKS[task].title,
      "overrides": TASKS[task].overrides,
      "rate": rates[task],
      "seeds": seeds,
      "shapes": {shape: shape_row([done[(task, shape, s)] for s in seeds], ce) for shape in shapes},
    }
  steps = task_config(tasks[0], rates[tasks[0]], 0, args.smoke).train.steps
  report = {
    "tasks": report_tasks,
    "summary": {s: summarise(report_tasks, s) for s in shapes if s != BASELINE},
    "config": {
      "steps": steps,
      "shapes": shapes,
      "tasks": tasks,
      "rates": rates,
      "seeds": len(seeds),
      "baseline_config": os.path.relpath(suite.BASELINE_CONFIG, ROOT),
      "smoke": args.smoke,
      "command": command,
      "seconds": time.time() - started,
    },
  }
  written = [os.path.join(out, name) for name in ("results.json", "table.md", "gain.png")]
  table = write_report(
    *written[:2],
    report,
    f"Fixed loss shapes against cross-entropy: {steps} student steps per run"
    + (" (smoke)" if args.smoke else ""),
    format_table(report),
  )
  plot_gains(
    report,
    written[2],
    f"Fixed loss shapes: gain over CE, paired by seed ({len(seeds)} seeds, {steps} steps)",
  )
  print("\n" + table)
  print("wrote " + ", ".join(written))
  return report


if __name__ == "__main__":
  main()
