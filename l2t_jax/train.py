"""The training driver: the side-effecting edge around the pure cycle functions of `loop`.

It loads the data, builds the method, runs its jitted cycle over the deterministic batch order,
evaluates, prints progress, and writes `metrics.jsonl`, `config.json` and `summary.json`.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from l2t_jax import config as config_lib
from l2t_jax.data import Dataset, load_dataset
from l2t_jax.data.sampler import TRAIN_STREAM, VAL_STREAM, batch_indices
from l2t_jax.loop import Method, TrainState, build_method
from l2t_jax.metrics import MetricsWriter, make_evaluator, to_python, write_json_atomic
from l2t_jax.optim import student_optimizer
from l2t_jax.students import Student, build_student


class TrainResult(NamedTuple):
  summary: dict
  state: TrainState
  method: Method


class Run(NamedTuple):
  """Everything a run is built from, before any step is taken."""
  config: ml_collections.ConfigDict
  dataset: Dataset
  student: Student
  optimizer: optax.GradientTransformation
  method: Method
  evaluate: Callable
  val_batch_size: int


def build_run(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> Run:
  """Validates `config` and builds its run; `dataset` replaces the one the config names."""
  config = config_lib.validate(config)
  dataset = dataset if dataset is not None else load_dataset(config)
  student = build_student(config.student, dataset.num_classes)
  optimizer = student_optimizer(config.optim, config.train.steps)
  method = build_method(config, student, optimizer, dataset.num_classes)
  if config.train.batch_size > len(dataset.train):
    raise config_lib.ConfigError(
        f"train.batch_size={config.train.batch_size} exceeds the {len(dataset.train)} training "
        "examples; lower it")
  val_batch_size = config.meta.val_batch_size or len(dataset.val)
  if config.method in config_lib.META_METHODS and val_batch_size > len(dataset.val):
    raise config_lib.ConfigError(
        f"meta.val_batch_size={val_batch_size} exceeds the {len(dataset.val)} validation examples; "
        "lower it or raise data.val_size")
  evaluate = make_evaluator(student, config.train.eval_batch_size)
  return Run(config, dataset, student, optimizer, method, evaluate, val_batch_size)


def device_data(dataset: Dataset) -> dict:
  """The training and validation splits on the device, as the cycle functions take them."""
  return jax.device_put({"train_x": dataset.train.x, "train_y": dataset.train.y,
                         "val_x": dataset.val.x, "val_y": dataset.val.y})


def _fmt(x: float, spec: str = ".4f") -> str:
  return "  n/a " if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _summary_text(s: dict) -> str:
  lines = [
      f"== {s['method']} on {s['dataset']} ({s['student']}), seed {s['seed']} ==",
      f"student steps      {s['student_steps']}",
      f"test accuracy      {_fmt(s['test_accuracy'])}   (loss {_fmt(s['test_loss'])})",
      f"val accuracy       {_fmt(s['val_accuracy'])}   (best {_fmt(s['best_val_accuracy'])} at "
      f"step {s['best_val_step']}, test there {_fmt(s['test_accuracy_at_best_val'])})",
      f"wall time          {s['wall_seconds']:.1f} s (first cycle incl. compile "
      f"{s['compile_seconds']:.1f} s; {s['steps_per_second']:.0f} steps/s after)",
  ]
  if s["meta_updates"] or s["skipped_meta_updates"]:
    lines.append(f"loss updates       {s['meta_updates']} ({s['skipped_meta_updates']} skipped as "
                 f"non-finite); teacher updates {s['teacher_updates']} "
                 f"({s['skipped_teacher_updates']} skipped)")
  return "\n".join(lines)


def train(config: ml_collections.ConfigDict, workdir: str | None = None,
          log: Callable[[str], Any] = print, dataset: Dataset | None = None) -> TrainResult:
  """Runs `config` to the end; returns the summary, the final state and the method.

  `dataset` (optional) trains on your own splits instead of the dataset the config names.
  """
  wall0 = time.time()
  run = build_run(config, dataset)
  cfg, ds = run.config, run.dataset
  interval, steps = cfg.meta.interval, cfg.train.steps
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    write_json_atomic(os.path.join(workdir, "config.json"), json.loads(cfg.to_json()))
  writer = MetricsWriter(workdir)

  state = run.method.init(jax.random.PRNGKey(cfg.seed), jnp.asarray(ds.train.x[:1]))
  data = device_data(ds)
  cycle = jax.jit(run.method.cycle, donate_argnums=(0,))

  log(f"l2t_jax: {cfg.method} on {ds.name} ({cfg.student.name}), seed {cfg.seed}, {steps} student "
      f"steps, batch {cfg.train.batch_size}; {len(ds.train)} train / {len(ds.val)} val / "
      f"{len(ds.test)} test examples; device {jax.devices()[0].platform}")

  def evaluation(step):
    val = run.evaluate(state.student.params, state.student.model_state, ds.val.x, ds.val.y)
    test = run.evaluate(state.student.params, state.student.model_state, ds.test.x, ds.test.y)
    return {"kind": "eval", "step": step, "val_accuracy": val["accuracy"], "val_loss": val["loss"],
            "test_accuracy": test["accuracy"], "test_loss": test["loss"]}

  since_log: list = []
  evals = [evaluation(0)]  # the untrained student: where every curve starts
  writer.write(evals[0])
  compile_seconds = 0.0
  t_log, step_log = time.time(), 0
  t_after_first, last_train = None, {}
  for c in range(steps // interval):
    start = c * interval
    train_idx = batch_indices(cfg.seed, TRAIN_STREAM, len(ds.train), cfg.train.batch_size, start,
                              interval)
    val_idx = batch_indices(cfg.seed, VAL_STREAM, len(ds.val), run.val_batch_size, c, 1)[0]
    state, metrics = cycle(state, data, train_idx, val_idx)
    since_log.append(metrics)
    step = start + interval
    if c == 0:
      jax.block_until_ready(state)
      compile_seconds = time.time() - wall0
      t_after_first = time.time()
    last = step == steps
    if step // cfg.train.log_every > start // cfg.train.log_every or last:
      fetched = jax.device_get(since_log)  # the only wait on the device in a logging period
      means = to_python(jax.tree_util.tree_map(lambda *xs: np.mean(xs), *fetched))
      now = time.time()
      record = {"kind": "train", "step": step, **means._asdict(),
                **to_python(state.counters._asdict()),
                "steps_per_second": (step - step_log) / max(now - t_log, 1e-9),
                "elapsed_seconds": now - wall0}
      writer.write(record)
      last_train = record
      since_log, t_log, step_log = [], now, step
      line = (f"step {step:>7d}/{steps} | train loss {_fmt(record['train_loss'])} ce "
              f"{_fmt(record['train_ce'])} acc {_fmt(record['train_accuracy'], '.3f')}")
      if not math.isnan(record["val_loss"]):
        line += f" | meta val loss {_fmt(record['val_loss'])}"
      log(line + f" | {record['steps_per_second']:.0f} steps/s")
    if step // cfg.train.eval_every > start // cfg.train.eval_every or last:
      record = evaluation(step)
      writer.write(record)
      evals.append(record)
      log(f"eval {step:>7d}/{steps} | val acc {record['val_accuracy']:.4f} loss "
          f"{record['val_loss']:.4f} | test acc {record['test_accuracy']:.4f} loss "
          f"{record['test_loss']:.4f}")

  jax.block_until_ready(state)
  wall = time.time() - wall0
  final = evals[-1]
  best = max(evals, key=lambda r: (r["val_accuracy"], -r["step"]))
  counters = to_python(state.counters._asdict())
  summary = {
      "method": cfg.method, "seed": cfg.seed, "dataset": ds.name, "student": cfg.student.name,
      "student_steps": steps,
      "test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
      "val_accuracy": final["val_accuracy"], "val_loss": final["val_loss"],
      "best_val_accuracy": best["val_accuracy"], "best_val_step": best["step"],
      "test_accuracy_at_best_val": best["test_accuracy"],
      "final_train_ce": last_train.get("train_ce"),
      "wall_seconds": wall, "compile_seconds": compile_seconds,
      "steps_per_second": ((steps - interval) / (time.time() - t_after_first)
                           if steps > interval else math.nan),
      **counters,
  }
  if workdir:
    write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  log(_summary_text(summary))
  return TrainResult(summary, state, run.method)
