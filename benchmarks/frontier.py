"""Teaching at the cost of training (issue 28): L2T-DLN's gain over CE against its wall time over
CE's, over a grid of meta-schedules, and the cheapest schedule that keeps the default's gain.

  python benchmarks/frontier.py --out out/frontier
  python benchmarks/frontier.py --out out/frontier --extra val100:meta.val_batch_size=100 \
      --extra i50_k5_val100:meta.interval=50,meta.unroll_steps=5,meta.val_batch_size=100
  python benchmarks/frontier.py --out out/frontier --write_config configs/fashion_mnist_fast.py
  python benchmarks/frontier.py --out /tmp/frontier_smoke --smoke

Tasks (--tasks, benchmarks/suite.py's names; default the Fashion-MNIST MLP 500-300 with 40 %
symmetric and 40 % pair-flip label noise and a clean validation split). On each, every schedule
of the grid --intervals x --unrolls (meta.interval N: student steps per DLN update; meta.unroll_steps
K <= N: the first K of them differentiated; a pair with K > N is skipped) and every --extra point
(NAME:KEY=VALUE[,KEY=VALUE...]: the default schedule with these overrides, which may set the
schedule too) trains L2T-DLN on --seeds seeds, each paired with CE's run of the same seed at the
same rate: the one the suite's CE sweep chose for the task (--rates_from, default
benchmarks/results/fmnist/results.json, where L2T-DLN ran at it too), or --rate. The configs are the
suite's (`suite.method_config`: the method's config file, the task's overrides, then the point's);
every one is validated before the first run starts. The library's other cost levers go through
--extra: meta.val_batch_size (validation images per hypergradient), meta.teacher_every (DLN
updates per teacher update; with N = 100 on 5000 steps there are only 50 DLN updates, so 9 teacher
updates at M = 5); the teacher's gradient is already first order (teacher.gradient="window") and
the library has no bf16 unroll.

Per point and task: the gain over CE in accuracy points (of the mean test accuracy) with the
standard error of the seed-by-seed differences (`suite.paired_gain`), seeds won, and its cost:
the median over seeds of a run's wall time without compiling (`suite.training_seconds`) over CE's.
Per schedule, the mean over the tasks: the mean gain, its standard error sqrt(sum se_t^2) / n
(as `suite.summarise`), and the mean cost ratio.

The fast point: the cheapest schedule by mean cost (the higher mean gain among equal costs) that
keeps at least --keep (80 %) of the default's gain on every task within one standard error,
gain_t + gain_se_t >= 0.8 * default_gain_t for each task t where the default gains, so that a
large gain on one task cannot carry a loss on another. The default is L2T-DLN's config as it is
(meta.interval = meta.unroll_steps = 10; in --smoke the smoke config's 2 and 1), which must be in
the grid. None when the default gains on no task. --write_config PATH writes a config
file for it that loads configs/fashion_mnist.py from beside itself (so PATH belongs in configs/)
and sets the schedule; its docstring states the measured gain and cost.

The Pareto frontier (of each task and of the means): the points, CE at (1, 0) among them, that no
cheaper or equally cheap point beats in gain, in order of cost.

Runs are kept in OUT/runs/<task>/<point>/seed<k> (CE's in OUT/runs/<task>/ce_lr<rate>/seed<k>, as
in the suite) and reused when finished with the same config (--rerun trains anew), so adding a
point trains that point alone. Writes OUT/frontier.json ({"points": [per task and schedule],
"mean": [per schedule], "tasks": {per task: CE's mean and training seconds, ...}, "default_point",
"fast_point", "fast_config", "rule", "command", "config"}), OUT/frontier.md (the table, also printed)
and OUT/frontier.png (gain against cost, one marker per point and task with its standard error, the
frontiers as lines, CE at (1, 0)). --smoke: every run in four steps on a few examples (the smoke
config), one seed, the grid 2,4 x 1,2 unless given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import suite  # noqa: E402
from benchmarks.common import write_report  # noqa: E402
from benchmarks.compare_losses import parse_override  # noqa: E402

DEFAULT_TASKS = "fmnist_mlp_sym40,fmnist_mlp_pair40"
KEEP = 0.8  # of the default's gain on every task, within one standard error
RATES_FROM = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "results", "fmnist", "results.json"
)


def swept_rates(path: str) -> dict[str, float]:
  """The rate each task's CE sweep chose in a suite's results.json (L2T-DLN runs at it there too,
  so the default schedule's gain here is the suite's)."""
  with open(path) as f:
    tasks = json.load(f)["tasks"]
  return {t: float(v["methods"]["ce"]["learning_rate"]) for t, v in tasks.items()}


def grid_name(interval: int, unroll: int) -> str:
  return f"i{interval}_k{unroll}"


def parse_ints(text: str, flag: str) -> list[int]:
  try:
    values = [int(x) for x in text.split(",") if x]
  except ValueError:
    raise ValueError(f"{flag} {text}: expected comma-separated positive integers") from None
  if not values or min(values) < 1:
    raise ValueError(f"{flag} {text}: expected comma-separated positive integers")
  return values


def parse_extra(text: str) -> tuple[str, list[tuple[str, object]]]:
  """`NAME:KEY=VALUE[,KEY=VALUE...]` (a value may hold commas, e.g. a tuple: a new pair starts at
  `,KEY=`)."""
  name, sep, rest = text.partition(":")
  if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not rest:
    raise ValueError(
      f"--extra {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE], e.g. val100:meta.val_batch_size=100"
    )
  items = re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", rest)
  return name, [parse_override(item) for item in items]


def pareto(points: list[dict]) -> list[dict]:
  """The points that no cheaper or equally cheap point beats in gain (the highest gain at no more
  cost), in order of cost; points of a non-finite gain or cost are left out."""
  finite = [p for p in points if math.isfinite(p["cost_vs_ce"]) and math.isfinite(p["gain"])]
  frontier, best = [], -math.inf
  for p in sorted(finite, key=lambda p: (p["cost_vs_ce"], -p["gain"])):
    if p["gain"] > best:
      frontier.append(p)
      best = p["gain"]
  return frontier


def keeps_gain(schedule: dict, reference: dict, keep: float = KEEP) -> bool:
  """The rule, task by task (`per_task` of `mean_over_tasks`): on every task where `reference`
  gains, gain + gain_se >= keep * the reference's gain; False when it gains on none."""
  gained = {t: r["gain"] for t, r in reference["per_task"].items() if r["gain"] > 0}
  return bool(gained) and all(
    schedule["per_task"][t]["gain"] + schedule["per_task"][t]["gain_se"] >= keep * g
    for t, g in gained.items()
  )


def choose_fast(schedules: list[dict], default: str, keep: float = KEEP) -> dict | None:
  """The cheapest of `schedules` (`mean_over_tasks` rows with a name) that keeps `keep` of the
  gain of the one named `default` on every task (`keeps_gain`), the higher mean gain among equal
  costs; None when the default gains on no task or none is of a finite cost."""
  reference = next(s for s in schedules if s["name"] == default)
  kept = [s for s in schedules if math.isfinite(s["cost_vs_ce"]) and keeps_gain(s, reference, keep)]
  return min(kept, key=lambda s: (s["cost_vs_ce"], -s["gain"])) if kept else None


def mean_over_tasks(rows: list[dict]) -> dict:
  """One schedule's rows (one per task) as one: mean gain, its standard error, seeds won, mean cost."""
  n = len(rows)
  return {
    "gain": float(np.mean([r["gain"] for r in rows])),
    "gain_se": float(np.sqrt(sum(r["gain_se"] ** 2 for r in rows)) / n),
    "wins": int(sum(r["wins"] for r in rows)),
    "runs_per_task": [len(r["seeds"]) for r in rows],
    "cost_vs_ce": float(np.mean([r["cost_vs_ce"] for r in rows])),
    "tasks": [r["task"] for r in rows],
    "per_task": {r["task"]: {"gain": r["gain"], "gain_se": r["gain_se"]} for r in rows},
  }


def config_text(report: dict, point: dict) -> str:
  """A config file for `point` (a schedule of report["mean"]): configs/fashion_mnist.py and the
  point's overrides, its docstring the measurement."""
  default = next(s for s in report["mean"] if s["name"] == report["default_point"])
  tasks = ", ".join(report["tasks"])
  seeds = sorted({len(t["seeds"]) for t in report["tasks"].values()})
  smoke = " (a smoke run: not a measurement)" if report["config"]["smoke"] else ""
  lines = [
    f'"""Fashion-MNIST with L2T-DLN\'s fast meta-schedule ({point["name"]}): configs/fashion_mnist.py',
    "with " + ", ".join(f"{key}={value!r}" for key, value in point["overrides"]) + ".",
    "",
    f"The cheapest schedule that keeps {100 * report['rule']['keep']:g} % of the default's gain "
    "on every task under label",
    "noise within one standard error (benchmarks/frontier.py: gain + se >= that share of the "
    "default's).",
    "",
    f"Measured{smoke} on {tasks} ({'/'.join(map(str, seeds))} seed"
    + ("s" if seeds != [1] else "")
    + ", paired with CE by seed):",
    f"gain over CE {point['gain']:+.2f} +- {point['gain_se']:.2f} points at "
    f"{point['cost_vs_ce']:.2f}x CE's wall time ("
    + ", ".join(
      f"{t} {g['gain']:+.2f} +- {g['gain_se']:.2f} against {default['per_task'][t]['gain']:+.2f}"
      for t, g in point["per_task"].items()
    )
    + ");",
    f"the default (interval {default['interval']}, unroll {default['unroll_steps']}): "
    f"{default['gain']:+.2f} +- {default['gain_se']:.2f} points at {default['cost_vs_ce']:.2f}x.",
    "",
    f"  {report['command']}",
    "",
    f"  l2t-train --config={report['fast_config'] or 'configs/NAME.py'}:mlp "
    "--workdir=runs/fmnist_mlp_fast",
    '"""',
    "",
    "import os",
    "",
    "from l2t_jax.config import config_file_module",
    "",
    "",
    'def get_config(student: str = "mlp"):',
    "  here = os.path.dirname(os.path.abspath(__file__))",
    '  config = config_file_module(os.path.join(here, "fashion_mnist.py")).get_config(student)',
    *(f"  config.{key} = {value!r}" for key, value in point["overrides"]),
    "  return config",
    "",
  ]
  return "\n".join(lines)


def format_table(report: dict) -> str:
  tasks = list(report["tasks"])
  rows = {(p["task"], p["name"]): p for p in report["points"]}
  default = next(s for s in report["mean"] if s["name"] == report["default_point"])
  default_gain = default["gain"]
  on_frontier = {p["name"] for p in report["frontier"]}
  fast = report["fast_point"]["name"] if report["fast_point"] else None
  lines = [
    "Per schedule: gain over CE (points) +- the standard error of the seed-by-seed differences "
    "(seeds won) and cost (a run's wall time without compiling over CE's, median over seeds), per "
    f"task and the mean over tasks; `keeps`: gain + se >= {report['rule']['keep']:g} x the "
    "default's gain on every task; `frontier`: on the Pareto frontier of the means.",
    "",
    "| schedule | interval | unroll | "
    + " | ".join(f"{t} gain | {t} cost" for t in tasks)
    + " | mean gain | mean cost | keeps | frontier |",
    "|---" * (7 + 2 * len(tasks)) + "|",
  ]
  for s in report["mean"]:
    cells = []
    for t in tasks:
      p = rows[(t, s["name"])]
      cells += [
        f"{p['gain']:+.2f} +- {p['gain_se']:.2f} ({p['wins']}/{len(p['seeds'])})",
        f"{p['cost_vs_ce']:.2f}x",
      ]
    name = s["name"] + (" (default)" if s["name"] == report["default_point"] else "")
    name += " **fast**" if s["name"] == fast else ""
    lines.append(
      f"| {name} | {s['interval']} | {s['unroll_steps']} | "
      + " | ".join(cells)
      + f" | {s['gain']:+.2f} +- {s['gain_se']:.2f} | {s['cost_vs_ce']:.2f}x | "
      f"{'yes' if keeps_gain(s, default, report['rule']['keep']) else 'no'} | "
      f"{'yes' if s['name'] in on_frontier else ''} |"
    )
  lines += [
    "",
    "CE: "
    + ", ".join(
      f"{t} {100 * v['ce_mean']:.2f} % (lr {v['rate']:g}, {v['ce_training_seconds']:.2f} s a run)"
      for t, v in report["tasks"].items()
    ),
    "",
    (
      f"Fast point: {fast} (interval {report['fast_point']['interval']}, unroll "
      f"{report['fast_point']['unroll_steps']}): {report['fast_point']['gain']:+.2f} +- "
      f"{report['fast_point']['gain_se']:.2f} points at {report['fast_point']['cost_vs_ce']:.2f}x "
      f"CE's cost, against the default's {default_gain:+.2f}; of the default's gain it keeps "
      + ", ".join(
        f"{100 * report['fast_point']['per_task'][t]['gain'] / g['gain']:.0f} % on {t}"
        for t, g in default["per_task"].items()
        if g["gain"] > 0
      )
      + "."
      if fast
      else "Fast point: none (the default gains on no task, or no schedule keeps its gain)."
    ),
  ]
  return "\n".join(lines)


def plot_frontier(report: dict, path: str, title: str) -> None:
  """Gain against cost, one panel per task and one for the means over tasks (each at its own
  scale: the gains differ by tenfold between tasks): a marker per schedule (error bar: its
  standard error), the Pareto frontier as a line, CE at (1, 0), the default ringed, the fast point
  starred, the share of the default's gain to keep dotted on each task; the schedules on the
  frontier, the default and the fast one named."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ce = {"name": "ce", "gain": 0.0, "gain_se": 0.0, "cost_vs_ce": 1.0}
  fast = report["fast_point"]["name"] if report["fast_point"] else None
  sets = [
    (task, [p for p in report["points"] if p["task"] == task], f"C{i}")
    for i, task in enumerate(report["tasks"])
  ]
  sets.append(("mean over tasks", report["mean"], "k"))
  fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.6), squeeze=False)
  for ax, (label, points, colour) in zip(axes[0], sets):
    finite = [p for p in points if math.isfinite(p["cost_vs_ce"]) and math.isfinite(p["gain"])]
    ax.errorbar(
      [p["cost_vs_ce"] for p in finite],
      [p["gain"] for p in finite],
      yerr=[p["gain_se"] for p in finite],
      fmt="o",
      color=colour,
      ms=5,
      capsize=2,
      alpha=0.8,
      label="schedules (+- se)",
    )
    frontier = pareto(finite + [ce])
    ax.plot(
      [p["cost_vs_ce"] for p in frontier],
      [p["gain"] for p in frontier],
      color=colour,
      lw=1.2,
      label="frontier",
    )
    named = {p["name"] for p in frontier} | {report["default_point"], fast}
    for p in finite:
      if p["name"] in named:
        ax.annotate(
          p["name"],
          (p["cost_vs_ce"], p["gain"]),
          fontsize=7,
          xytext=(4, -9),
          textcoords="offset points",
        )
      if p["name"] == report["default_point"]:
        ax.plot([p["cost_vs_ce"]], [p["gain"]], "o", mfc="none", mec="k", ms=11, label="default")
      if p["name"] == fast:
        ax.plot(
          [p["cost_vs_ce"]], [p["gain"]], "*", color="gold", mec="k", ms=15, label=f"fast: {fast}"
        )
    default = next(p for p in points if p["name"] == report["default_point"])
    if colour != "k" and default["gain"] > 0:  # the rule holds task by task
      keep = report["rule"]["keep"]
      ax.axhline(keep * default["gain"], color=colour, ls=":", lw=1.0, label=f"{keep:g} x default")
    ax.plot([1.0], [0.0], "kX", ms=8, label="CE")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlabel("wall time of a run over CE's (compiling excluded)")
    ax.set_ylabel("test accuracy gain over CE (points)")
    ax.set_title(label, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated, of suite's tasks")
  parser.add_argument(
    "--intervals", default=None, help="meta.interval values (default 10,20,50,100)"
  )
  parser.add_argument("--unrolls", default=None, help="meta.unroll_steps values (default 1,5,10)")
  parser.add_argument(
    "--extra",
    action="append",
    default=[],
    metavar="NAME:KEY=VALUE[,KEY=VALUE]",
    help="a named point: the default schedule with these overrides (repeatable)",
  )
  parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 5; smoke 1)")
  parser.add_argument(
    "--rate", type=float, default=None, help="every run's rate (default: see --rates_from)"
  )
  parser.add_argument(
    "--rates_from",
    default=None,
    help="a suite results.json: each task at the rate its CE sweep chose (default "
    f"{RATES_FROM}; 'none', or --smoke: the task's own rate)",
  )
  parser.add_argument("--dln_config", default=suite.DLN_CONFIG, help="L2T-DLN's config file")
  parser.add_argument("--keep", type=float, default=KEEP, help="share of the default's gain kept")
  parser.add_argument(
    "--write_config", default="", help="write the fast point's config file here (in configs/)"
  )
  parser.add_argument("--data_dir", default="", help="where the real-image tasks' data is")
  parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time (processes)")
  parser.add_argument(
    "--compilation_cache", default=None, help="default OUT/xla_cache; 'none' for no cache"
  )
  parser.add_argument("--rerun", action="store_true", help="train every run anew")
  parser.add_argument("--smoke", action="store_true", help="four steps a run, one seed")
  args = parser.parse_args(argv)
  command = shlex.join(
    [
      sys.argv[0] if argv is None else "benchmarks/frontier.py",
      *(sys.argv[1:] if argv is None else argv),
    ]
  )

  tasks = suite.expand_tasks(args.tasks)
  unknown = [t for t in tasks if t not in suite.KNOWN_TASKS]
  if unknown:
    parser.error(f"--tasks: unknown {unknown}; known: {list(suite.KNOWN_TASKS)}")
  if args.jobs < 1:
    parser.error("--jobs must be >= 1")
  n_seeds = args.seeds if args.seeds is not None else 1 if args.smoke else 5
  if n_seeds < 1:
    parser.error("--seeds must be >= 1")
  seeds = list(range(n_seeds))
  try:
    intervals = parse_ints(
      args.intervals or ("2,4" if args.smoke else "10,20,50,100"), "--intervals"
    )
    unrolls = parse_ints(args.unrolls or ("1,2" if args.smoke else "1,5,10"), "--unrolls")
    extras = [parse_extra(text) for text in args.extra]
  except ValueError as e:
    parser.error(str(e))

  bases = suite.load_bases(args.dln_config)
  if bases["l2t_dln"].method != "l2t_dln":
    parser.error(
      f"--dln_config {args.dln_config}: method='{bases['l2t_dln'].method}', expected 'l2t_dln'"
    )
  steps = {t: suite.suite_steps(bases, None, args.smoke, t) for t in tasks}
  rates_from = args.rates_from or ("none" if args.smoke else RATES_FROM)
  if args.rate is not None or rates_from == "none":
    rates_from = None  # each task at --rate, or at its own
  try:
    swept = swept_rates(rates_from) if rates_from else {}
  except (OSError, ValueError, KeyError) as e:
    parser.error(f"--rates_from {rates_from}: {e}; give a suite results.json, or --rate")
  rates = {
    t: args.rate
    if args.rate is not None
    else swept.get(
      t,
      suite.KNOWN_TASKS[t].overrides.get(
        "optim.learning_rate", bases["l2t_dln"].optim.learning_rate
      ),
    )
    for t in tasks
  }

  def config_for(method: str, task: str, seed: int, overrides=()):
    c = suite.method_config(
      method,
      task,
      seed,
      rates[task],
      bases=bases,
      overrides=list(overrides),
      steps=steps[task],
      smoke=args.smoke,
    )
    if args.data_dir and c.data.name not in ("mnist1d", "digits"):
      c.data.data_dir = args.data_dir
    return c

  # The schedules: the grid, then the extras; the default is L2T-DLN's config as it is.
  plain = config_for("l2t_dln", tasks[0], 0)
  default = (plain.meta.interval, plain.meta.unroll_steps)
  points = {
    grid_name(n, k): [("meta.interval", n), ("meta.unroll_steps", k)]
    for n in intervals
    for k in unrolls
    if k <= n
  }
  if grid_name(*default) not in points:
    parser.error(
      f"the default schedule (meta.interval={default[0]}, meta.unroll_steps={default[1]}) is "
      f"not in the grid --intervals {intervals} x --unrolls {unrolls}: it is the reference"
    )
  for name, overrides in extras:
    if name in points or name.startswith("ce_lr"):
      parser.error(f"--extra {name}: the name is taken; choose another")
    points[name] = [("meta.interval", default[0]), ("meta.unroll_steps", default[1])]
    points[name] = [p for p in points[name] if p[0] not in dict(overrides)] + overrides

  from l2t_jax.config import ConfigError, validate

  schedule = {}
  try:  # every config, checked before the first run starts
    for task in tasks:
      name = "ce"
      validate(config_for("ce", task, 0))
      for name, overrides in points.items():
        c = validate(config_for("l2t_dln", task, 0, overrides))
        dln_updates = c.train.steps // c.meta.interval
        schedule[(task, name)] = {
          "interval": c.meta.interval,
          "unroll_steps": c.meta.unroll_steps,
          "dln_updates": dln_updates,
          "teacher_updates": max(dln_updates - 1, 0) // c.meta.teacher_every,
        }
  except (ConfigError, ValueError, TypeError, KeyError) as e:
    parser.error(f"point {name} on {task}: the config does not work: {e}")
  for (task, name), s in schedule.items():
    if s["teacher_updates"] == 0:
      print(f"note: {name} on {task}: {s['dln_updates']} DLN updates, no teacher update")

  out = args.out
  os.makedirs(out, exist_ok=True)

  def ce_name(task: str) -> str:
    return f"ce_lr{rates[task]:g}"

  specs = []
  for seed in seeds:  # seed-major: every program's first seed compiles it for the others
    for task in tasks:
      specs.append(
        suite.RunSpec(
          task,
          ce_name(task),
          "ce",
          seed,
          config_for("ce", task, seed),
          os.path.join(out, "runs", task, ce_name(task), f"seed{seed}"),
        )
      )
      for name, overrides in points.items():
        specs.append(
          suite.RunSpec(
            task,
            name,
            "l2t_dln",
            seed,
            config_for("l2t_dln", task, seed, overrides),
            os.path.join(out, "runs", task, name, f"seed{seed}"),
          )
        )
  done: dict[tuple, dict] = {}

  def on_finish(finished: suite.RunSpec, summary: dict) -> list:
    done[(finished.task, finished.name, finished.seed)] = summary
    return []

  print(
    f"frontier: tasks {tasks}, {len(points)} points {list(points)}, seeds {seeds}, steps {steps}, "
    f"rates {rates}, {len(specs)} runs, {args.jobs} at a time" + (" (smoke)" if args.smoke else ""),
    flush=True,
  )
  cache = args.compilation_cache or os.path.join(out, "xla_cache")
  suite.run_all(
    specs, on_finish, len(specs), args.jobs, args.rerun, "" if cache == "none" else cache
  )

  def row(task: str, name: str) -> dict:
    summaries = [done[(task, name, s)] for s in seeds]
    return {
      "test_accuracy": [r["test_accuracy"] for r in summaries],
      "val_accuracy": [r["val_accuracy"] for r in summaries],
      "wall_seconds": [r["wall_seconds"] for r in summaries],
      "compile_seconds": [r["compile_seconds"] for r in summaries],
    }

  report_tasks, report_points = {}, []
  for task in tasks:
    ce = row(task, ce_name(task))
    ce_seconds = suite.training_seconds(ce)
    report_tasks[task] = {
      "title": suite.KNOWN_TASKS[task].title,
      "steps": steps[task],
      "seeds": seeds,
      "rate": rates[task],
      "ce_mean": float(np.mean(ce["test_accuracy"])),
      "ce_training_seconds": ce_seconds,
      "ce_test_accuracy": ce["test_accuracy"],
      "ce_wall_seconds": ce["wall_seconds"],
      "ce_compile_seconds": ce["compile_seconds"],
      "ce_runs": os.path.join("runs", task, ce_name(task)),
    }
    for name, overrides in points.items():
      r = row(task, name)
      gain = suite.paired_gain(r["test_accuracy"], ce["test_accuracy"])
      seconds = suite.training_seconds(r)
      report_points.append(
        {
          "task": task,
          "name": name,
          **schedule[(task, name)],
          "overrides": overrides,
          "gain": gain["gain_vs_ce"],
          "gain_se": gain["gain_se"],
          "wins": gain["wins_vs_ce"],
          "cost_vs_ce": seconds / ce_seconds if ce_seconds > 0 else float("nan"),
          "training_seconds": seconds,
          **r,
          "mean_test_accuracy": float(np.mean(r["test_accuracy"])),
          "seeds": seeds,
          "runs": os.path.join("runs", task, name),
        }
      )
  means = []
  for name, overrides in points.items():
    rows = [p for p in report_points if p["name"] == name]
    means.append(
      {
        "name": name,
        "interval": rows[0]["interval"],
        "unroll_steps": rows[0]["unroll_steps"],
        "overrides": overrides,
        **mean_over_tasks(rows),
      }
    )
  default_name = grid_name(*default)
  fast = choose_fast(means, default_name, args.keep)
  report = {
    "points": report_points,
    "mean": means,
    "frontier": pareto(means + [{"name": "ce", "gain": 0.0, "gain_se": 0.0, "cost_vs_ce": 1.0}]),
    "tasks": report_tasks,
    "default_point": default_name,
    "fast_point": fast,
    "fast_config": args.write_config or None,
    "rule": {
      "keep": args.keep,
      "text": f"the cheapest schedule (mean cost) with gain + se >= {args.keep:g} x the "
      "default's gain on every task where the default gains (none when it gains on none)",
    },
    "command": command,
    "config": {
      "tasks": tasks,
      "intervals": intervals,
      "unrolls": unrolls,
      "extra": args.extra,
      "seeds": seeds,
      "rates": rates,
      "rates_from": os.path.relpath(rates_from) if rates_from else None,
      "steps": steps,
      "dln_config": os.path.relpath(args.dln_config),
      "smoke": args.smoke,
      "command": command,
    },
  }
  written = [os.path.join(out, f) for f in ("frontier.json", "frontier.md", "frontier.png")]
  if args.write_config:
    if fast is None:
      print("no fast point: no config written")
    else:
      with open(args.write_config, "w") as f:
        f.write(config_text(report, fast))
      written.append(args.write_config)
  lengths = sorted(set(steps.values()))
  table = write_report(
    *written[:2],
    report,
    f"Gain against cost of L2T-DLN's meta-schedule: {' or '.join(map(str, lengths))} student "
    f"steps, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}" + (" (smoke)" if args.smoke else ""),
    format_table(report),
  )
  plot_frontier(
    report,
    written[2],
    f"L2T-DLN's gain over CE against its cost ({', '.join(tasks)})",
  )
  print("\n" + table)
  print("wrote " + ", ".join(written))
  return report


if __name__ == "__main__":
  main()
