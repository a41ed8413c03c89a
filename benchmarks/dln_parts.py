"""What the DLN adds to a meta-segment, part by part, each timed alone against the floor's part.

The meta-segment's ratio to its floor (speed.py) is one number from two whole programs, and on a
shared machine it moves by tenths between repeats. Here each part the DLN adds is a small jitted
program of its own, timed many times (minimum and median over repeats: the two agree when the
machine is quiet), on the default experiment's settings (configs/mnist1d_mlp.py: batch 128,
K = meta.unroll_steps, the DLN and the teacher as configured):

- `loss`: every student step, the loss's value and logits' gradient, and a hypergradient's
  reverse pass through them (a scan of K steps differentiated), on logits of a fitting student.
  Ours: the tabulated DLN (`dln_table.table_loss`); floor: one weight on cross-entropy.
- `table`: once a segment, tabulating the DLN (`dln_table.make_table`) and the hypergradient's
  way back through it into the DLN's parameters. The floor has none.
- `teacher`: once a segment, the teacher's step (`Teaching.update`, its own learning included)
  on all the DLN's coordinates; floor: on the one weight.

Per-segment parts are divided by K: everything is in µs per student step.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset 0x2 python benchmarks/dln_parts.py --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from l2t_jax import build, losses  # noqa: E402
from benchmarks.common import load_config  # noqa: E402

CONFIG = "mnist1d_mlp"  # the default experiment
LOGIT_SCALE = 3.0  # spread of the synthetic logits: a student part-way through fitting
PARTS = ("loss", "table", "teacher")


def loss_program(loss_fn: Callable, params, steps: int, batch: int, classes: int):
  """K steps of the loss's value and logits' gradient, differentiated back through all of them
  into the loss's parameters and the logits: what a hypergradient asks of the loss."""
  logits = LOGIT_SCALE * jax.random.normal(jax.random.PRNGKey(1), (steps, batch, classes))
  labels = jax.random.randint(jax.random.PRNGKey(2), (steps, batch), 0, classes)

  def segment(params, logits):
    def step(total, z_y):
      value, grad = jax.value_and_grad(loss_fn, argnums=1)(params, *z_y)
      return total + value, grad

    total, grads = jax.lax.scan(step, 0.0, (logits, labels))
    return total + (grads * grads).sum()

  run = jax.jit(jax.grad(segment, argnums=(0, 1)))
  return lambda: run(params, logits)


def table_program(student_loss, phi, table_size: int):
  def coefficients(phi):
    return student_loss.tabulate(phi).coefficients

  def forward_and_back(phi, cotangent):
    table, back = jax.vjp(coefficients, phi)
    return table, back(cotangent)

  run = jax.jit(forward_and_back)
  cotangent = jnp.ones((2 * (table_size + 1), 4))
  return lambda: run(phi, cotangent)


def teacher_program(config, loss_params, segments: int):
  """`segments` consecutive teacher updates (the window's teacher steps among them) on random
  hypergradients of the loss parameters' shape."""
  teaching = build.make_teaching(config)
  state = teaching.init(jax.random.PRNGKey(0), loss_params)
  flat, unravel = ravel_pytree(loss_params)
  grads = 1e-3 * jax.random.normal(jax.random.PRNGKey(3), (segments, flat.size))
  features = jnp.zeros((teaching.teacher.num_features,), jnp.float32)

  def run(state, phi, grads):
    def body(carry, g):
      phi, state = carry
      phi, state, _ = teaching.update(
        unravel(g), state, phi, features if teaching.teacher.num_features else None
      )
      return (phi, state), None

    return jax.lax.scan(body, (phi, state), grads)[0]

  run = jax.jit(run)
  return lambda: run(state, loss_params, grads)


def time_program(thunk: Callable, calls: int, repeats: int) -> list[float]:
  """Seconds per call, one entry per repeat (after one untimed call that compiles)."""
  jax.block_until_ready(thunk())
  out = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls):
      result = thunk()
    jax.block_until_ready(result)
    out.append((time.perf_counter() - t0) / calls)
  return out


def measure(repeats: int, calls: int, segments: int, log=print) -> dict:
  config = load_config(CONFIG)
  steps, batch, classes = config.meta.unroll_steps, config.train.batch_size, 10
  student_loss = build.make_student_loss(config.dln)  # the default's tabulated DLN
  phi = student_loss.init(jax.random.PRNGKey(0))
  table = student_loss.tabulate(phi)

  def table_loss(coefficients, z, y):
    return student_loss.loss(table._replace(coefficients=coefficients), z, y)

  def weighted_ce(weight, z, y):
    return weight * losses.cross_entropy(z, y)

  programs = {  # part -> (ours, floor's or None, student steps per call)
    "loss": (
      loss_program(table_loss, table.coefficients, steps, batch, classes),
      loss_program(weighted_ce, jnp.ones(()), steps, batch, classes),
      steps,
    ),
    "table": (table_program(student_loss, phi, config.dln.table_size), None, steps),
    "teacher": (
      teacher_program(config, phi, segments),
      teacher_program(config, {"weight": jnp.ones(())}, segments),
      steps * segments,
    ),
  }
  out = {}
  for part, (ours, floor, per_call) in programs.items():
    row = {}
    for who, thunk in (("ours", ours), ("floor", floor)):
      if thunk is None:
        row[who] = {"min_us": 0.0, "median_us": 0.0}
        continue
      seconds = [s / per_call for s in time_program(thunk, calls, repeats)]
      row[who] = {"min_us": 1e6 * min(seconds), "median_us": 1e6 * statistics.median(seconds)}
    row["excess_min_us"] = row["ours"]["min_us"] - row["floor"]["min_us"]
    out[part] = row
    log(
      f"  {part}: ours {row['ours']['min_us']:.1f} (median {row['ours']['median_us']:.1f}), "
      f"floor {row['floor']['min_us']:.1f} µs per student step"
    )
  return {
    "device": jax.devices()[0].device_kind,
    "batch_size": batch,
    "unroll_steps": steps,
    "dln_coordinates": int(ravel_pytree(phi)[0].size),
    "table_size": config.dln.table_size,
    "parts": out,
    "excess_min_us": sum(r["excess_min_us"] for r in out.values()),
  }


def table_text(report: dict) -> str:
  lines = [
    "| part (µs per student step) | ours: min (median) | floor: min (median) | excess (min) |",
    "|---|---|---|---|",
  ]
  for part, r in report["parts"].items():
    lines.append(
      f"| {part} | {r['ours']['min_us']:.1f} ({r['ours']['median_us']:.1f}) | "
      f"{r['floor']['min_us']:.1f} ({r['floor']['median_us']:.1f}) | {r['excess_min_us']:.1f} |"
    )
  lines.append(f"| all three | | | {report['excess_min_us']:.1f} |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--calls", type=int, default=10, help="calls per timed repeat")
  parser.add_argument(
    "--segments", type=int, default=20, help="teacher updates per call of the teacher's program"
  )
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  report = measure(args.repeats, args.calls, args.segments)
  with open(os.path.join(args.out, "dln_parts.json"), "w") as f:
    json.dump(report, f, indent=2)
  print(table_text(report))
  print(f"\nwrote {args.out}/dln_parts.json")
  return report


if __name__ == "__main__":
  main()
