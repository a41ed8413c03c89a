"""The paper's classification tables: test error (%) of CE, L2T-DLF and L2T-DLN per setting.

  python benchmarks/paper_tables.py --data_dir=~/tensorflow_datasets --workdir=runs/paper
  python benchmarks/paper_tables.py --configs=cifar10_resnet8,cifar10_resnet20 --seeds=0,1,2
  python benchmarks/paper_tables.py --reference   # adds L2T-DLN under the authors' protocol
  python benchmarks/paper_tables.py --smoke   # a few steps on tfds.testing.mock_data, CPU

Settings are named as in `benchmarks.common.PAPER_CONFIGS`: `mnist_mlp` and `mnist_lenet` (their
files in configs/) and the CIFAR settings of `configs/cifar.py` (`cifar10_resnet8`, ...,
`cifar100_densenet`). `--reference` (and `--smoke`, by default) adds the row `l2t_dln_reference`:
for a setting NAME, the run of `configs/reference_cifar.py:NAME` (or `configs/reference_NAME.py`),
the same student under the authors' protocol (`l2t_jax/reference.py`); settings without such a
config have no cell in that row.

Every (config, method, seed) is one `l2t_jax.train.train` run in its own workdir
(`WORKDIR/<config>/<method>/seed<k>`), checkpointed as its config says: rerunning the command
resumes unfinished runs and reuses finished ones. It prints one table per dataset, in the layout of
the paper (rows: methods; columns: students; cells: final test error in %, mean +- std over seeds)
and writes every run's summary and the tables to a JSON file. `--executor=slurm` sends every run
to SLURM as its own job (`benchmarks/scheduler.py`: `--slurm_*` resources, `--detach`, and the
same command collects the tables later).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import sys
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import scheduler  # noqa: E402
from benchmarks.common import (  # noqa: E402
  PAPER_CONFIGS,
  config_argument,
  finished_summary,  # noqa: E402
  load_config,
  smoke_config,
)

REFERENCE = "l2t_dln_reference"  # L2T-DLN under the authors' protocol: reference_NAME
METHODS = ("ce", "l2t_dlf", "l2t_dln", REFERENCE)
DEFAULT_METHODS = ("ce", "l2t_dlf", "l2t_dln")
METHOD_NAMES = {
  "ce": "Cross entropy",
  "l2t_dlf": "L2T-DLF",
  "l2t_dln": "L2T-DLN",
  REFERENCE: "L2T-DLN, authors' protocol",
}
DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
SMOKE_CONFIGS = ("mnist_lenet", "cifar10_resnet8")
SMOKE_EXAMPLES = 40  # per split of the mock datasets: 24 train + 16 validation, 40 test


def student_label(config) -> str:
  s = config.student
  return {
    "mlp": "MLP",
    "lenet5": "LeNet",
    "resnet": f"ResNet-{s.depth}",
    "wrn": f"WRN-{s.depth}-{s.widen_factor}",
    "densenet": f"DenseNet-BC-{s.depth}",
  }.get(s.name, s.name)


def _cell(errors: list[float]) -> str:
  if not errors:
    return "-"
  mean = sum(errors) / len(errors)
  if len(errors) == 1:
    return f"{mean:.2f}"
  std = math.sqrt(sum((e - mean) ** 2 for e in errors) / (len(errors) - 1))
  return f"{mean:.2f} ± {std:.2f}"


def tables(results: list[dict]) -> dict[str, dict]:
  """{dataset: {"columns": [...], "rows": {method: {column: [errors]}}}} in the paper's order."""
  out: dict[str, dict] = {}
  for r in results:
    t = out.setdefault(r["dataset"], {"columns": [], "rows": {}})
    if r["student"] not in t["columns"]:
      t["columns"].append(r["student"])
    t["rows"].setdefault(r["method"], {}).setdefault(r["student"], []).append(r["test_error"])
  return out


def format_tables(tabs: dict[str, dict]) -> str:
  lines = []
  for dataset, t in tabs.items():
    columns = t["columns"]
    cells = {
      m: [_cell(t["rows"].get(m, {}).get(c, [])) for c in columns]
      for m in METHODS
      if m in t["rows"]
    }
    width = max([len(c) for c in columns] + [len(x) for row in cells.values() for x in row] + [6])
    head = f"{'Test error (%) on ' + DATASET_NAMES.get(dataset, dataset):<28}" + "".join(
      f" | {c:>{width}}" for c in columns
    )
    lines += [head, "-" * len(head)]
    for m, row in cells.items():
      lines.append(f"{METHOD_NAMES[m]:<28}" + "".join(f" | {x:>{width}}" for x in row))
    lines.append("")
  return "\n".join(lines)


def method_config(name: str, method: str):
  """The config that `method` runs for the setting `name` (`configs/NAME.py` or
  `configs/cifar.py:NAME`) with its method set, or for the reference row `reference_NAME`
  (`configs/reference_NAME.py` or `configs/reference_cifar.py:NAME`; None when there is none)."""
  if method != REFERENCE:
    config = load_config(name)
    config.method = method
    return config
  reference = f"reference_{name}"
  return load_config(reference) if config_argument(reference) is not None else None


def run_one(config, workdir: str, log) -> dict:
  """The summary of one run, reusing it when `workdir` already holds it for this config."""
  from l2t_jax.train import train

  summary = finished_summary(workdir, config)
  return summary if summary is not None else train(config, workdir=workdir, log=log).summary


class _Run(NamedTuple):
  """One (config, method, seed) of the tables, as `benchmarks.scheduler` sends it."""

  label: str
  workdir: str
  config: object
  row: dict  # the run's entry of the report, without its summary


def _result(row: dict, summary: dict) -> dict:
  return {**row, "test_error": 100.0 * (1.0 - summary["test_accuracy"]), "summary": summary}


def _run_job(config, workdir: str, smoke: bool) -> tuple[dict, str]:
  """One run in a job of its own (--executor): on the mock data when `smoke`."""
  mock = contextlib.nullcontext()
  if smoke:
    import tensorflow_datasets as tfds

    mock = tfds.testing.mock_data(num_examples=SMOKE_EXAMPLES)
  with mock:
    summary = run_one(config, workdir, lambda _: None)
  return summary, f"{workdir}: test acc {summary['test_accuracy']:.4f}"


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--configs",
    default=None,
    help=f"comma-separated setting names (default: all of {PAPER_CONFIGS}; "
    f"with --smoke: {SMOKE_CONFIGS})",
  )
  parser.add_argument(
    "--methods",
    default=None,
    help=f"comma-separated, of {METHODS} (default: {DEFAULT_METHODS}; with --smoke all of them)",
  )
  parser.add_argument(
    "--reference",
    action="store_true",
    help=f"add the row {REFERENCE}: the authors' protocol for each setting",
  )
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--data_dir", default="", help="TFDS data directory (default: TFDS's own)")
  parser.add_argument("--workdir", default="runs/paper_tables")
  parser.add_argument(
    "--out", default=None, help="JSON output (default: WORKDIR/paper_tables.json)"
  )
  parser.add_argument(
    "--smoke",
    action="store_true",
    help="tfds.testing.mock_data, two cycles of two steps, small architectures",
  )
  parser.add_argument("--quiet", action="store_true", help="no per-run progress lines")
  parser.add_argument(
    "--jobs", type=int, default=1, help="--executor=submitit_local: runs trained at a time"
  )
  scheduler.add_arguments(parser)
  args = parser.parse_args(argv)

  names = (
    args.configs.split(",")
    if args.configs
    else list(SMOKE_CONFIGS if args.smoke else PAPER_CONFIGS)
  )
  methods = (
    args.methods.split(",") if args.methods else list(METHODS if args.smoke else DEFAULT_METHODS)
  )
  if args.reference and REFERENCE not in methods:
    methods.append(REFERENCE)
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    parser.error(f"--methods: unknown {unknown}; known: {METHODS}")
  seeds = [int(s) for s in args.seeds.split(",")]
  log = (lambda _: None) if args.quiet else print

  mock = contextlib.nullcontext()
  if args.smoke and args.executor == "pool":
    import tensorflow_datasets as tfds

    mock = tfds.testing.mock_data(num_examples=SMOKE_EXAMPLES)
  results, runs = [], []
  with mock:
    for name in names:
      for method in methods:
        base = method_config(name, method)
        if base is None:
          print(f"== {name} / {method}: no reference_{name} config, no run", flush=True)
          continue
        for seed in seeds:
          config = smoke_config(base) if args.smoke else copy.deepcopy(base)
          config.seed = seed
          if args.data_dir:
            config.data.data_dir = os.path.expanduser(args.data_dir)
          workdir = os.path.join(args.workdir, name, method, f"seed{seed}")
          row = {
            "config": name,
            "dataset": config.data.name,
            "student": student_label(base),
            "method": method,
            "seed": seed,
          }
          if args.executor != "pool":  # sent below, all at once
            runs.append(_Run(f"{name}/{method} seed {seed}", workdir, config, row))
            continue
          print(f"== {name} / {method} / seed {seed} -> {workdir}", flush=True)
          results.append(_result(row, run_one(config, workdir, log)))
  if runs:
    done = {}
    if not scheduler.run_all(
      runs,
      lambda run, summary: done.update({run.workdir: summary}) or [],
      len(runs),
      args,
      args.workdir,
      job=lambda run: (_run_job, (run.config, run.workdir, args.smoke)),
      finished=lambda run: finished_summary(run.workdir, run.config) is not None,
    ):
      return {}  # --detach: the same command collects the tables
    results = [_result(run.row, done[run.workdir]) for run in runs]
  tabs = tables(results)
  text = format_tables(tabs)
  print(("SMOKE RUN on mock data (numbers mean nothing)\n" if args.smoke else "") + text)
  out = args.out or os.path.join(args.workdir, "paper_tables.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  report = {"smoke": args.smoke, "tables": tabs, "runs": results}
  from l2t_jax.metrics import json_dumps

  with open(out, "w") as f:
    f.write(json_dumps(report, indent=2))  # strict JSON: a missing number is null, never NaN
  print(f"wrote {out}")
  return report


if __name__ == "__main__":
  main()
