"""Where the meta-segment's time goes: a thunk-level profile of the MLP student's meta-segment
against its floor, with the DLN loss's derivatives written out (`dln_table.table_loss`) and by
automatic differentiation of the item values (the formulation before), in one process.

Every subject's cycle (K = interval, every segment differentiated) runs under the JAX profiler,
the subjects interleaved; each XLA thunk's cost is a low percentile of its durations (robust to
other processes on the machine) times its executions, per student step. Thunks that run every
student step (the K-step loops, forward and reverse) are split from those that run once a segment
(the table and its gradient, the teacher, the bookkeeping), and grouped by kind.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/meta_profile.py --out out/profile

Subjects: `floor` (one weight on CE: the floor of speed.py), `floor_dln_teacher` (the same loss,
but the teacher steps on all the DLN's coordinates: what the teacher alone costs at the DLN's
size), `autodiff` (the tabulated DLN, derivatives by automatic differentiation of
`table_item_values`), `written_out` (`table_loss`, the default).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from l2t_jax import build, dln as dln_lib, dln_table, losses  # noqa: E402
from benchmarks import speed  # noqa: E402
from l2t_jax.data import load_dataset  # noqa: E402
from l2t_jax.methods import dln_method as dln_method_of  # noqa: E402
from l2t_jax.student_loss import FunctionLoss  # noqa: E402

KINDS = (
  ("save residual", r"dynamic-update-slice"),
  ("read residual", r"dynamic-slice"),
  ("matmul", r"^(dot|ynn|custom-call|convolution)"),
  ("gather", r"gather"),
  ("scatter", r"scatter"),
  ("transcendental", r"exponential|log|tanh|logistic|power"),
)
TOP_THUNKS = 60  # the costliest thunks of each subject kept in profile.json
WRAPPERS = re.compile(r"^(while|cond|\$|end:)|Thunk|::|Pjit|PjRt|ParseArguments")


def dln_method(loss_fn, tabulate: bool = True):
  """`methods.dln_method` of the run's config with the learned loss `loss_fn` of the DLN's
  parameters, tabulated once a segment (`tabulate`) or not."""

  def make(run):
    config = run.config
    segments = build.make_segments(config, run.student, run.optimizer, run.dataset.num_classes)
    dln = dln_lib.make_dln(config.dln)
    tabulate_fn = None
    if tabulate:
      tabulate_fn = lambda phi: dln_table.make_table(  # noqa: E731
        dln, phi, config.dln.table_size, config.dln.slope_bound, config.dln.slope_floor
      )
    return dln_method_of(
      segments, FunctionLoss(dln.init, loss_fn, tabulate_fn), build.make_teaching(config)
    )

  return make


SUBJECTS = {
  "floor": speed.floor_method,
  "floor_dln_teacher": dln_method(
    lambda phi, z, y: dln_table.effective_skip(phi) * losses.cross_entropy(z, y), tabulate=False
  ),
  "autodiff": dln_method(
    lambda table, z, y: dln_table.table_item_values(table, z, y).sum(-1).mean()
  ),
  "written_out": dln_method(dln_table.table_loss),
}


def kind(name: str) -> str:
  for label, pattern in KINDS:
    if re.search(pattern, name):
      return label
  return "other"


def profile(subjects: dict, rounds: int, trace_dir: str, percentile: float) -> dict:
  """Per subject: {thunk: (cost per student step, executions per student step)}."""
  shutil.rmtree(trace_dir, ignore_errors=True)
  order = []
  for s in subjects.values():
    s.time_per_step()
  with jax.profiler.trace(trace_dir):
    for _ in range(rounds):
      for key, s in subjects.items():
        order.append(key)
        s.time_per_step()
  path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
  events = [e for e in json.load(gzip.open(path))["traceEvents"] if e.get("ph") == "X"]
  windows = sorted(
    (e["ts"], e["ts"] + e["dur"]) for e in events if e["name"].endswith("time_per_step")
  )
  if len(windows) != len(order):
    raise RuntimeError(f"found {len(windows)} timed passes in the trace, expected {len(order)}")
  starts = np.array([a for a, _ in windows])
  durations = collections.defaultdict(list)
  for e in events:
    i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
    if WRAPPERS.search(e["name"]) or i < 0 or e["ts"] > windows[i][1]:
      continue
    durations[(order[i], e["name"])].append(e["dur"])
  out = collections.defaultdict(dict)
  for (key, name), d in durations.items():
    steps = rounds * len(subjects[key].train_idx) * subjects[key].interval
    out[key][name] = (float(np.percentile(d, percentile)) * len(d) / steps, len(d) / steps)
  return dict(out)


def summarize(costs: dict) -> dict:
  out = {}
  for key, thunks in costs.items():
    row = {
      "total_us": 0.0,
      "per_step_us": 0.0,
      "per_segment_us": 0.0,
      "per_step_thunks": 0.0,
      "per_step_by_kind_us": collections.Counter(),
    }
    for name, (us, calls) in thunks.items():
      row["total_us"] += us
      if calls >= 0.5:  # runs every student step
        row["per_step_us"] += us
        row["per_step_thunks"] += calls
        row["per_step_by_kind_us"][kind(name)] += us
      else:
        row["per_segment_us"] += us
    row["per_step_by_kind_us"] = dict(row["per_step_by_kind_us"])
    out[key] = row
  return out


def table(summary: dict) -> str:
  floor = summary["floor"]["total_us"]
  kinds = [k for k, _ in KINDS] + ["other"]
  lines = [
    "| subject | µs / student step | / floor | every step (thunks) | once a segment | "
    + " | ".join(kinds)
    + " |",
    "|---" * (5 + len(kinds)) + "|",
  ]
  for key, r in summary.items():
    lines.append(
      f"| {key} | {r['total_us']:.0f} | {r['total_us'] / floor:.2f} | "
      f"{r['per_step_us']:.0f} ({r['per_step_thunks']:.0f}) | "
      f"{r['per_segment_us']:.0f} | "
      + " | ".join(f"{r['per_step_by_kind_us'].get(k, 0.0):.0f}" for k in kinds)
      + " |"
    )
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps_per_repeat", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--percentile", type=float, default=5.0)
  args = parser.parse_args(argv)
  base = speed.student_config("mlp")
  base.train.batch_size = 128
  dataset = load_dataset(base)
  seg = speed.variants(base)["meta_segment"]
  subjects = {}
  for key, method in SUBJECTS.items():
    config = seg.copy_and_resolve_references()
    subjects[key] = speed.Subject(
      config, dataset, speed.cycles_for(config, args.steps_per_repeat, args.rounds + 1), method
    )
  os.makedirs(args.out, exist_ok=True)
  trace_dir = tempfile.mkdtemp(prefix="meta_profile_")
  try:
    costs = profile(subjects, args.rounds, trace_dir, args.percentile)
  finally:
    shutil.rmtree(trace_dir, ignore_errors=True)
  summary = summarize(costs)
  with open(os.path.join(args.out, "profile.json"), "w") as f:
    json.dump(
      {
        "device": jax.devices()[0].device_kind,
        "percentile": args.percentile,
        "rounds": args.rounds,
        "unroll_steps": base.meta.unroll_steps,
        "batch_size": base.train.batch_size,
        "subjects": summary,
        "thunks": {
          k: dict(sorted(v.items(), key=lambda x: -x[1][0])[:TOP_THUNKS]) for k, v in costs.items()
        },
      },
      f,
      indent=2,
    )
  print(table(summary))
  return summary


if __name__ == "__main__":
  main()
