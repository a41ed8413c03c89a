"""Training throughput of CE and L2T-DLN with CIFAR ResNets, on synthetic CIFAR-shaped data.

  python benchmarks/gpu_throughput.py --out=gpu_throughput.json     # one GPU, 2-3 min on an H200
  python benchmarks/gpu_throughput.py --smoke                       # CPU, seconds
  python benchmarks/gpu_throughput.py --set meta.interval=20 --set meta.unroll_steps=5 \
      --out=gpu_throughput_fast.json                                # the fast schedule (issue 28)

Needs no download: the data are random 32x32x3 images with random labels (throughput does not depend
on the pixels). For each (method, ResNet depth) it builds the run of
`configs/cifar.py:cifar10_resnet<depth>` (batch 128, augmentation on the device, the project's
meta-training defaults), compiles and warms up the cycle, then times `--repeats` blocks of
`--cycles` cycles and reports the median: milliseconds per student step and training images per
second (batch / step time; for L2T-DLN a step's share of the unrolled hypergradient and the teacher
is included). Compile time is reported apart. The JSON is rewritten after every measurement, so a
run cut short keeps what it measured. Imports neither tensorflow_datasets nor mnist1d.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import load_config, smoke_config, synthetic_dataset  # noqa: E402
from benchmarks.compare_losses import apply_override, parse_override  # noqa: E402
from l2t_jax.train import build_run, cycle_indices, data_arrays  # noqa: E402

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


def measure(config, dataset, cycles: int, repeats: int) -> dict:
  """Compile + warm-up time, then the median over `repeats` of the time per student step, of the
  run the driver builds for `config` on `dataset`."""
  run = build_run(config, dataset)
  dp, interval = run.parallel, config.meta.interval
  indices = list(cycle_indices(run, 0, 1 + repeats * cycles))
  state = dp.replicate(
    run.method.init(jax.random.PRNGKey(config.seed), jnp.asarray(dataset.train.x[:1]))
  )
  data = dp.replicate(data_arrays(dataset))
  cycle = dp.compile_cycle(run.method.cycle, config.train.fast_compile)
  t0 = time.perf_counter()
  state, metrics = cycle(state, data, *indices[0])
  jax.block_until_ready((state, metrics))
  compile_seconds = time.perf_counter() - t0
  step_seconds = []
  for r in range(repeats):
    t0 = time.perf_counter()
    for c in range(1 + r * cycles, 1 + (r + 1) * cycles):
      state, metrics = cycle(state, data, *indices[c])
    jax.block_until_ready((state, metrics))
    step_seconds.append((time.perf_counter() - t0) / (cycles * interval))
  step = statistics.median(step_seconds)
  finite = bool(np.isfinite(np.asarray(dp.local(metrics).train_loss)))
  return {
    "compile_seconds": compile_seconds,
    "step_ms": 1e3 * step,
    "step_ms_min": 1e3 * min(step_seconds),
    "step_ms_max": 1e3 * max(step_seconds),
    "images_per_second": config.train.batch_size / step,
    "finite_loss": finite,
    "devices": dp.size,
  }


def format_table(report: dict) -> str:
  lines = [
    f"Training throughput on {report['device']} x{report['devices']} "
    f"(jax {report['jax']}, batch {report['batch_size']}, synthetic CIFAR-shaped data)",
    f"{'method':<9} {'student':<10} {'compile s':>9} {'ms/step':>9} {'images/s':>10}",
  ]
  for r in report["results"]:
    if "skipped" in r:
      lines.append(f"{r['method']:<9} {'ResNet-' + str(r['depth']):<10} skipped: {r['skipped']}")
      continue
    lines.append(
      f"{r['method']:<9} {'ResNet-' + str(r['depth']):<10} {r['compile_seconds']:>9.1f} "
      f"{r['step_ms']:>9.2f} {r['images_per_second']:>10.0f}"
    )
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default="ce,l2t_dln")
  parser.add_argument("--depths", default="8,32")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument(
    "--cycles", type=int, default=10, help="cycles (of meta.interval steps) per repeat"
  )
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a config override for every run, e.g. meta.interval=20 (repeatable)",
  )
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--train_examples", type=int, default=10_000)
  parser.add_argument(
    "--budget_seconds",
    type=float,
    default=360.0,
    help="skip measurements that would start after this much time",
  )
  parser.add_argument("--out", default="gpu_throughput.json")
  parser.add_argument(
    "--smoke",
    action="store_true",
    help="CPU check of the script: ResNet-8, batch 8, 2 repeats of 1 cycle",
  )
  args = parser.parse_args(argv)
  try:
    overrides = [parse_override(text) for text in args.set]
    for key, value in overrides:  # refused before any run when the config has no such key
      apply_override(load_config("cifar10_resnet8"), key, value)
  except ValueError as e:
    parser.error(str(e))
  if args.smoke:
    args.depths, args.batch_size, args.cycles, args.repeats = "8", 8, 1, 2
    args.train_examples = 64

  t_start = time.perf_counter()
  device = jax.devices()[0]
  report = {
    "device": getattr(device, "device_kind", device.platform),
    "devices": jax.local_device_count(),
    "jax": jax.__version__,
    "batch_size": args.batch_size,
    "smoke": args.smoke,
    "repeats": args.repeats,
    "cycles_per_repeat": args.cycles,
    "set": dict(overrides),
    "results": [],
  }
  for method in args.methods.split(","):
    for depth in (int(d) for d in args.depths.split(",")):
      config = load_config(f"cifar10_resnet{depth}")
      if args.smoke:
        config = smoke_config(config, small_architecture=False, batch_size=args.batch_size)
      config.method = method
      config.train.batch_size = args.batch_size
      config.checkpoint.every = 0
      for key, value in overrides:
        apply_override(config, key, value)
      val = config.meta.val_batch_size
      dataset = synthetic_dataset(IMAGE_SHAPE, NUM_CLASSES, args.train_examples, val)
      entry = {
        "method": method,
        "depth": depth,
        "unroll_steps": config.meta.unroll_steps,
        "interval": config.meta.interval,
        "val_batch_size": val,
      }
      elapsed = time.perf_counter() - t_start
      if elapsed > args.budget_seconds:
        entry["skipped"] = f"time budget spent ({elapsed:.0f} s > {args.budget_seconds:.0f} s)"
      else:
        entry.update(measure(config, dataset, args.cycles, args.repeats))
      report["results"].append(entry)
      print(f"{method} ResNet-{depth}: {entry}", flush=True)
      with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
  report["wall_seconds"] = time.perf_counter() - t_start
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(format_table(report))
  print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main()
