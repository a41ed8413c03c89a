"""How often a method passes issue 11's bar at the suite's seed counts, by resampling seeds.

The suite (`benchmarks/suite.py`) reads a method's gain over tuned cross-entropy off three seeds per
task (five on MNIST-1D) and holds it to `suite.BAR`: a mean gain over tasks, a worst task's gain and
a worst seed's gap to its task's CE mean. This script asks what that bar can tell apart. From runs
of the suite at many seeds (each seed's method and CE runs share the data order and initialisation),
it draws suites of the suite's size with replacement from the seeds of every task, the method's run
and CE's run of a seed together, adds a gain `g` to the method's accuracies, and counts how often
the drawn suite meets each part of the bar. The control (`l2t_dln_frozen`: CE computed another
way) with `g` added is a method that gains exactly `g` points everywhere; the method's own runs
estimate how often it passes as it is.

  python benchmarks/bar_power.py --out OUT \
      --results benchmarks/results/suite10/rate0.1/results.json,\
benchmarks/results/suite10/rate0.2/results.json,benchmarks/results/suite10/noise40_rate0.05/results.json

Writes OUT/bar_power.json and prints a table: for each method and added gain, the probability of
meeting each part of the bar and the whole of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import suite  # noqa: E402

DEFAULT_GAINS = "0,0.5,1,1.5,2,3"
DEFAULT_METHODS = "l2t_dln_frozen,l2t_dln"


def paired_runs(paths: list[str], method: str) -> dict[str, np.ndarray]:
  """Per task, the test accuracies (points) of `method` and of CE, seed by seed: shape (2, seeds)."""
  out = {}
  for path in paths:
    with open(path) as f:
      tasks = json.load(f)["tasks"]
    for task, entry in tasks.items():
      runs = entry["methods"]
      if method not in runs or "ce" not in runs:
        continue
      ours, ce = runs[method], runs["ce"]
      if ours["seeds"] != ce["seeds"]:
        raise ValueError(f"{path}: {task}'s {method} and ce runs are not of the same seeds")
      out[task] = 100.0 * np.array([ours["test_accuracy"], ce["test_accuracy"]])
  if not out:
    raise ValueError(f"no task in {paths} has both '{method}' and 'ce' runs")
  return out


def pass_rates(
  runs: dict[str, np.ndarray], seeds: dict[str, int], gain: float, draws: int, rng
) -> dict[str, float]:
  """The share of `draws` resampled suites (seeds[task] seeds per task, drawn with replacement)
  in which the method, `gain` points better on every seed, meets each part of `suite.BAR`."""
  task_gains, seed_gaps = [], []
  for task, pair in runs.items():
    pick = rng.integers(0, pair.shape[1], size=(draws, seeds[task]))
    ours, ce = pair[0][pick] + gain, pair[1][pick]
    ce_mean = ce.mean(1)
    task_gains.append(ours.mean(1) - ce_mean)
    seed_gaps.append(ours.min(1) - ce_mean)
  task_gains, seed_gaps = np.array(task_gains), np.array(seed_gaps)
  parts = {
    "mean_gain": task_gains.mean(0) >= suite.BAR["mean_gain"],
    "worst_task_gain": task_gains.min(0) >= suite.BAR["worst_task_gain"],
    "worst_seed_gap": seed_gaps.min(0) >= suite.BAR["worst_seed_gap"],
  }
  out = {name: float(ok.mean()) for name, ok in parts.items()}
  out["whole_bar"] = float(np.logical_and.reduce(list(parts.values())).mean())
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--results", required=True, help="comma-separated results.json of the suite")
  parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated")
  parser.add_argument("--gains", default=DEFAULT_GAINS, help="points added to every seed")
  parser.add_argument("--tasks", default=None, help="comma-separated; default: every task found")
  parser.add_argument("--draws", type=int, default=20000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  paths = args.results.split(",")
  gains = [float(g) for g in args.gains.split(",")]
  report = {"bar": suite.BAR, "draws": args.draws, "results": paths, "methods": {}}
  lines = [
    "P(meeting the bar) over resampled suites; gain g added to every seed of the method",
    "",
    "| method | g | tasks (seeds drawn) | mean gain | worst task | worst seed | whole bar |",
    "|---|---|---|---|---|---|---|",
  ]
  for method in args.methods.split(","):
    runs = paired_runs(paths, method)
    if args.tasks:
      runs = {t: runs[t] for t in args.tasks.split(",") if t in runs}
    seeds = {task: suite.KNOWN_TASKS[task].seeds for task in runs}
    rng = np.random.default_rng(args.seed)
    rows = {}
    for gain in gains:
      rows[str(gain)] = rates = pass_rates(runs, seeds, gain, args.draws, rng)
      drawn = ", ".join(f"{t} {seeds[t]}/{runs[t].shape[1]}" for t in runs)
      lines.append(
        f"| {method} | {gain:+.1f} | {drawn} | {rates['mean_gain']:.2f} | "
        f"{rates['worst_task_gain']:.2f} | {rates['worst_seed_gap']:.2f} | "
        f"**{rates['whole_bar']:.2f}** |"
      )
    report["methods"][method] = {
      "tasks": {t: {"seeds_drawn": seeds[t], "seeds_available": runs[t].shape[1]} for t in runs},
      "pass_rates": rows,
    }
  text = "\n".join(lines)
  print(text)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "bar_power.json"), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(args.out, "bar_power.md"), "w") as f:
    f.write(text + "\n")
  return report


if __name__ == "__main__":
  main()
