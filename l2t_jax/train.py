"""The training driver: the side-effecting edge around the pure cycle functions of `methods`.

It loads the data, builds the method, runs its jitted cycle over the deterministic batch order
(data-parallel over the selected devices, see `l2t_jax.parallel`), evaluates, prints progress, and
writes `metrics.jsonl`, `config.json`, `summary.json` and, for L2T-DLN, the final teacher
(`teacher.msgpack`, to start later runs from: `config.teacher_init`). With `checkpoint.every` set
it saves orbax checkpoints in the workdir (every N steps, at the end, and on SIGTERM) and resumes
from the latest intact one, continuing `metrics.jsonl` where that checkpoint left it.

The workdir belongs to one run (`l2t_jax.workdir`): it is locked while the run writes, a workdir
holding another run is refused unless `overwrite`, and a finished run is reported, not rewritten.
A student whose loss turns NaN or infinite stops the run with `Diverged`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from l2t_jax import checkpoint as checkpoint_lib
from l2t_jax import config as config_lib
from l2t_jax import parallel as parallel_lib
from l2t_jax import teacher_io
from l2t_jax import workdir as workdir_lib
from l2t_jax.data import Dataset, load_dataset
from l2t_jax.data.sampler import (
  TRAIN_STREAM,
  VAL_STREAM,
  batch_indices,
  cycles_per_split,
  redrawn_half_indices,
)
from l2t_jax.build import build_method, make_task
from l2t_jax.methods import CycleMetrics, Method, TrainState
from l2t_jax.metrics import (
  MetricsWriter,
  make_evaluator,
  read_metrics,
  to_python,
  write_json_atomic,
)
from l2t_jax.optim import student_optimizer
from l2t_jax.students import Student, build_student

SKIP_COUNTERS = (
  ("skipped_meta_updates", "loss updates"),
  ("skipped_teacher_updates", "teacher updates"),
)


class Interrupted(Exception):
  """SIGTERM stopped the run after it saved a checkpoint; running it again resumes it. (A
  multi-process run without checkpoints stops likewise, with nothing saved: `directory` None.)"""

  def __init__(self, step: int, directory: str | None):
    saved = (
      f"checkpoint saved in {directory}; run the same command again to resume"
      if directory
      else "no checkpoint (checkpoint.every=0): the same command starts it again"
    )
    super().__init__(f"stopped by SIGTERM after student step {step}; {saved}")
    self.step = step


class Diverged(Exception):
  """The student's loss became NaN or infinite; the run stopped there, and its summary (in the
  workdir, and as `summary`) says so."""

  def __init__(self, summary: dict, learning_rate: float, workdir: str | None):
    where = f"; {workdir}/summary.json records it" if workdir else ""
    super().__init__(
      f"the student diverged: its training loss was NaN or infinite in the cycle ending at step "
      f"{summary['diverged_at_step']}, and the run stopped{where}; lower optim.learning_rate "
      f"(it is {learning_rate}) and run again in a new --workdir or with --overwrite"
    )
    self.summary = summary


class TrainResult(NamedTuple):
  summary: dict
  state: TrainState | None  # None: a finished run found in the workdir, without checkpoints
  method: Method | None  # None likewise


class Run(NamedTuple):
  """Everything a run is built from, before any step is taken."""

  config: ml_collections.ConfigDict
  dataset: Dataset
  student: Student
  optimizer: optax.GradientTransformation
  method: Method
  evaluate: Callable
  val_batch_size: int  # the meta-objective's validation batch; 0 for methods without one
  parallel: parallel_lib.DataParallel


def build_run(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> Run:
  """Validates `config` and builds its run; `dataset` replaces the one the config names."""
  config = config_lib.validate(config)
  parallel_lib.initialize(config.parallel)
  try:
    dp = parallel_lib.DataParallel(parallel_lib.select_devices(config.parallel))
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from e
  dataset = dataset if dataset is not None else load_dataset(config)
  student = build_student(config.student, dataset.num_classes, dp.axis_name)
  optimizer = student_optimizer(config.optim, config.train.steps)
  task = make_task(config, dataset.num_classes, dataset.input_shape, dp.axis_name, dataset.train.y)
  method = build_method(config, student, optimizer, dataset.num_classes, dp.axis_name, task)
  if config.train.batch_size > len(dataset.train):
    raise config_lib.ConfigError(
      f"train.batch_size={config.train.batch_size} exceeds the {len(dataset.train)} training "
      "examples; lower it"
    )
  val_batch_size = 0
  if config.method in config_lib.META_METHODS:
    val_batch_size = _check_validation_batch(config, dataset)
  problems = [dp.check_divides("train.batch_size", config.train.batch_size)]
  if val_batch_size:
    problems.append(
      dp.check_divides(
        "the validation batch (meta.val_batch_size, or data.val_size when it is 0)", val_batch_size
      )
    )
  problems = [q for q in problems if q]
  if problems:
    raise config_lib.ConfigError("; ".join(problems))
  evaluate = (task.make_evaluator if task else make_evaluator)(
    student, config.train.eval_batch_size
  )
  return Run(config, dataset, student, optimizer, method, evaluate, val_batch_size, dp)


def _redrawn(config: ml_collections.ConfigDict) -> bool:
  """Whether the cycles draw their batches from random halves of the training split (only methods
  with a validation batch do; the others train on the whole training split)."""
  return config.data.split == "redrawn_half" and config.method in config_lib.META_METHODS


def _check_validation_batch(config: ml_collections.ConfigDict, dataset: Dataset) -> int:
  """The meta-objective's validation batch size, refused when it does not fit the validation
  split (with redrawn halves: the validation half, whose training half must hold a batch)."""
  if not _redrawn(config):
    size = config.meta.val_batch_size or len(dataset.val)
    if size > len(dataset.val):
      raise config_lib.ConfigError(
        f"meta.val_batch_size={size} exceeds the {len(dataset.val)} validation examples; lower "
        "it or raise data.val_size"
      )
    return size
  n = len(dataset.train)
  size = config.meta.val_batch_size or n // 2
  problems = []
  if size > n // 2:
    problems.append(
      f"meta.val_batch_size={size} exceeds the validation half ({n // 2} of the "
      f"{n} training examples, data.split='redrawn_half'); lower it"
    )
  if config.train.batch_size > n - n // 2:
    problems.append(
      f"train.batch_size={config.train.batch_size} exceeds the training half "
      f"({n - n // 2} examples, data.split='redrawn_half'); lower it"
    )
  if problems:
    raise config_lib.ConfigError("; ".join(problems))
  return size


def data_arrays(dataset: Dataset, split: str = "fixed") -> dict:
  """The training and validation splits, keyed as the cycle functions take them. With `split`
  'redrawn_half' the validation batches index the training split too (its validation half)."""
  val = dataset.train if split == "redrawn_half" else dataset.val
  return {"train_x": dataset.train.x, "train_y": dataset.train.y, "val_x": val.x, "val_y": val.y}


def device_data(dataset: Dataset, split: str = "fixed") -> dict:
  """The training and validation splits on the (default) device."""
  return jax.device_put(data_arrays(dataset, split))


def _fmt(x: float | None, spec: str = ".4f") -> str:
  """A number as `spec`; NaN and infinities as such, a missing value as n/a."""
  return "  n/a " if x is None else format(x, spec)


def _rate(x: float | None) -> str:
  """Steps per second: whole numbers from 10 on, two significant digits below (a detector on a
  CPU runs at 0.35 steps/s, which `.0f` printed as 0)."""
  return _fmt(x, ".0f" if x is None or not math.isfinite(x) or x >= 10 else ".2g")


def _summary_text(s: dict) -> str:
  lines = [
    f"== {s['method']} on {s['dataset']} ({s['student']}), seed {s['seed']} ==",
    f"student steps      {s['student_steps']}",
    f"test accuracy      {_fmt(s['test_accuracy'])}   (loss {_fmt(s['test_loss'])})",
    f"val accuracy       {_fmt(s['val_accuracy'])}   (best {_fmt(s['best_val_accuracy'])} at "
    f"step {s['best_val_step']}, test there {_fmt(s['test_accuracy_at_best_val'])})",
    f"wall time          {s['wall_seconds']:.1f} s (first cycle incl. compile "
    f"{s['compile_seconds']:.1f} s; {_rate(s['steps_per_second'])} steps/s after)",
  ]
  if s.get("diverged_at_step") is not None:
    lines.append(
      f"DIVERGED           the student's loss was NaN or infinite in the cycle "
      f"ending at step {s['diverged_at_step']}; the run stopped there"
    )
  if s["meta_updates"] or s["skipped_meta_updates"]:
    lines.append(
      f"loss updates       {s['meta_updates']} ({s['skipped_meta_updates']} skipped as "
      f"non-finite); teacher updates {s['teacher_updates']} "
      f"({s['skipped_teacher_updates']} skipped)"
    )
  return "\n".join(lines)


def cycle_indices(run: Run, first_cycle: int, num_cycles: int) -> Iterator:
  """The batch indices of every cycle from `first_cycle` on, placed on the devices: a function of
  (seed, cycle) only, so that a resumed run sees the batches of an uninterrupted one."""
  for train_idx, val_idx in global_indices(run, first_cycle, num_cycles):
    yield run.parallel.put_indices(train_idx, val_idx)


def cycle_inputs(run: Run, data: Any, first_cycle: int, num_cycles: int) -> Iterator:
  """`(data, train_idx, val_idx)` for every cycle from `first_cycle` on: with `data` (the splits on
  every device) and `cycle_indices`; or, when `data` is None (several processes), each device's
  rows of the cycle's global batch and indices into them (`DataParallel.put_cycle`), read from
  this process's host copy of the splits, its own share only."""
  if data is not None:
    for train_idx, val_idx in cycle_indices(run, first_cycle, num_cycles):
      yield data, train_idx, val_idx
    return
  arrays = data_arrays(run.dataset, run.config.data.split)
  for train_idx, val_idx in global_indices(run, first_cycle, num_cycles):
    yield run.parallel.put_cycle(arrays, train_idx, val_idx)


def global_indices(run: Run, first_cycle: int, num_cycles: int) -> Iterator:
  """`cycle_indices` on the host: (steps, batch) and (val_batch,) indices into the splits."""
  cfg, ds, dp = run.config, run.dataset, run.parallel
  interval = cfg.meta.interval
  for c in range(first_cycle, num_cycles):
    if _redrawn(cfg):
      yield redrawn_half_indices(
        cfg.seed, len(ds.train), cfg.train.batch_size, run.val_batch_size, c, interval
      )
      continue
    train_idx = batch_indices(
      cfg.seed, TRAIN_STREAM, len(ds.train), cfg.train.batch_size, c * interval, interval
    )
    if run.val_batch_size:
      val_idx = batch_indices(cfg.seed, VAL_STREAM, len(ds.val), run.val_batch_size, c, 1)[0]
    else:  # the method has no validation batch: placeholder indices, never read
      val_idx = np.zeros((dp.size,), np.int32)
    yield train_idx, val_idx


def _skip_warnings(counters: dict, seen: dict, since_step: int) -> list[str]:
  lines = []
  for key, what in SKIP_COUNTERS:
    new = counters[key] - seen.get(key, 0)
    if new > 0:
      lines.append(
        f"warning: {new} {what} skipped after step {since_step} because the "
        f"hypergradient or the teacher's output was not finite ({counters[key]} in all); "
        "training goes on"
      )
  return lines


def _first_nonfinite(fetched: list, step: int, interval: int) -> int | None:
  """The last step of the first cycle in `fetched` (the cycles up to `step`) whose student loss
  was not finite; None when there is none."""
  bad = [i for i, m in enumerate(fetched) if m.nonfinite_loss]
  return step - (len(fetched) - 1 - bad[0]) * interval if bad else None


def train(
  config: ml_collections.ConfigDict,
  workdir: str | None = None,
  log: Callable[[str], Any] = print,
  dataset: Dataset | None = None,
  on_eval: Callable[[int, TrainState], None] | None = None,
  overwrite: bool = False,
) -> TrainResult:
  """Runs `config` to the end (resuming from `workdir`'s latest intact checkpoint if it has one);
  returns the summary, the final state and the method. Raises `Interrupted` after a SIGTERM,
  `Diverged` when the student's loss turns NaN or infinite, and `workdir.WorkdirError` when
  `workdir` is in use or holds another run (`overwrite=True` deletes that run's files first).
  A workdir holding this config's finished run is reported and left as it is: the stored summary
  is returned, with the final state when the run kept checkpoints (else None).

  `dataset` (optional) trains on your own splits instead of the dataset the config names.
  `on_eval(step, state)` (optional) is called at every evaluation, step 0 included, with this
  host's copy of the state, e.g. to snapshot the DLN; the next cycle may reuse (donate) the state's
  buffers, so copy what you keep (`jax.device_get`).
  """
  wall0 = time.time()
  cfg = config_lib.validate(config)
  if cfg.checkpoint.every and not workdir:
    raise config_lib.ConfigError(
      f"checkpoint.every={cfg.checkpoint.every} saves checkpoints in the workdir, and there is "
      "none: pass --workdir=DIR (train(..., workdir=DIR)), or set checkpoint.every=0"
    )
  if cfg.train.tensorboard and not workdir:
    raise config_lib.ConfigError(
      "train.tensorboard=True writes event files in the workdir, and there is none: pass "
      "--workdir=DIR (train(..., workdir=DIR)), or set train.tensorboard=False"
    )
  try:
    parallel_lib.initialize(cfg.parallel)  # before any other JAX call
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from e
  if not parallel_lib.is_lead():
    log = lambda _: None  # noqa: E731 (one process speaks for the run)
  with contextlib.ExitStack() as owned:  # released last: the lock, after the checkpointer
    action, prior = "new", None
    if workdir:
      action, prior = _plan_workdir(workdir, cfg, overwrite, owned, log)
      if action == "finished" and prior.summary.get("diverged_at_step") is not None:
        raise Diverged(prior.summary, cfg.optim.learning_rate, workdir)
      if action == "finished" and not prior.checkpoints:
        log(_finished_text(workdir, prior.summary))
        return TrainResult(prior.summary, None, None)
    return _train(cfg, workdir, action, prior, owned, log, dataset, on_eval, wall0)


def _from_lead(what: str, fn: Callable[[], Any]) -> Any:
  """`fn()` (JSON) on process 0, its result on every process; an error there is raised there and,
  as a WorkdirError naming it, on the others (instead of leaving them waiting)."""
  if jax.process_count() == 1:
    return fn()
  result, error = None, None
  if parallel_lib.is_lead():
    try:
      result = fn()
    except Exception as e:  # noqa: BLE001 (re-raised below, after the others are told)
      error = e
  shared = parallel_lib.broadcast_json(
    {"result": result, "error": None if error is None else f"{type(error).__name__}: {error}"}
  )
  if error is not None:
    raise error
  if shared["error"] is not None:
    raise workdir_lib.WorkdirError(f"process 0 failed to {what}: {shared['error']}")
  return shared["result"]


def _plan_workdir(
  workdir: str,
  cfg: ml_collections.ConfigDict,
  overwrite: bool,
  owned: contextlib.ExitStack,
  log: Callable[[str], Any],
) -> tuple[str, workdir_lib.PriorRun]:
  """What this run does in `workdir` (`workdir.plan`), decided by process 0, which takes the
  workdir's lock (held in `owned`) and reads what it holds; the other processes touch nothing
  there."""

  def plan() -> dict:
    lock = owned.enter_context(workdir_lib.Lock(workdir))
    if lock.previous_owner:
      log(
        f"{workdir} was locked by a run that did not end cleanly ({lock.previous_owner}, "
        "no longer running); taking it over"
      )
    prior = workdir_lib.inspect(workdir)
    return {"action": workdir_lib.plan(workdir, prior, cfg, overwrite), "prior": prior._asdict()}

  planned = _from_lead(f"use --workdir={workdir}", plan)
  prior = planned["prior"]
  return planned["action"], workdir_lib.PriorRun(**{**prior, "files": tuple(prior["files"])})


def _finished_text(workdir: str, summary: dict) -> str:
  return (
    f"{workdir} holds this run, finished; nothing was run or rewritten (pass --overwrite to "
    f"run it again)\n{_summary_text(summary)}"
  )


def _train(
  cfg: ml_collections.ConfigDict,
  workdir: str | None,
  action: str,
  prior: workdir_lib.PriorRun | None,
  owned: contextlib.ExitStack,
  log: Callable[[str], Any],
  dataset: Dataset | None,
  on_eval: Callable[[int, TrainState], None] | None,
  wall0: float,
) -> TrainResult:
  """`train` once the workdir is this run's (locked, and planned: `workdir.plan`'s `action`);
  `owned` closes the checkpointer and the metrics writer however the run ends."""
  run = build_run(cfg, dataset)
  ds, dp = run.dataset, run.parallel
  interval, steps = cfg.meta.interval, cfg.train.steps
  lead = parallel_lib.is_lead()
  files = workdir if lead else None
  if action in ("overwrite", "restart") and files:
    log(
      f"{workdir}: {'--overwrite: deleting' if action == 'overwrite' else 'starting again'} "
      f"the run it holds ({', '.join(prior.files)})"
    )
    workdir_lib.clear(files)
  if workdir:
    checkpoint_lib.sync_hosts("l2t_jax: workdir ready")  # every host sees it cleared
  with_checkpoints = bool(action in ("resume", "finished") or (workdir and cfg.checkpoint.every))
  ckpt = None  # process 0's: the others neither write nor read checkpoints
  if with_checkpoints and lead:
    ckpt = checkpoint_lib.Checkpointer(workdir, cfg.checkpoint)
    owned.callback(ckpt.close)
  ckpt_dir = os.path.abspath(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)) if workdir else None

  state = run.method.init(jax.random.PRNGKey(cfg.seed), jnp.asarray(ds.train.x[:1]))
  resumed = None
  if action in ("resume", "finished"):
    restored = {}

    def restore() -> dict:
      restored["state"], meta = ckpt.restore(state, json.loads(cfg.to_json()), log)
      return meta

    resumed = _from_lead("restore a checkpoint", restore)
    state = parallel_lib.broadcast_tree(restored.get("state", jax.device_get(state)))
  if resumed and resumed["step"] == steps and prior.summary is not None:
    log(_finished_text(workdir, prior.summary))  # this config's run, finished: rewrite nothing
    return TrainResult(prior.summary, state, run.method)
  if files:
    write_json_atomic(os.path.join(files, "config.json"), json.loads(cfg.to_json()))
  writer = MetricsWriter(
    files,
    resume_at=resumed["metrics_bytes"] if resumed else None,
    tensorboard=cfg.train.tensorboard,
  )
  owned.callback(writer.close)
  state = dp.replicate(state)
  multi = jax.process_count() > 1  # each process feeds its own share of every batch
  data = None if multi else dp.replicate(data_arrays(ds, cfg.data.split))
  cycle = dp.compile_cycle(run.method.cycle, cfg.train.fast_compile, sharded_data=multi)

  splits = f"{len(ds.train)} train / {len(ds.val)} val"
  if _redrawn(cfg):
    splits = (
      f"{len(ds.train)} train, halved at random every "
      f"{cycles_per_split(len(ds.train), run.val_batch_size)} cycles"
    )
  log(
    f"l2t_jax: {cfg.method} on {ds.name} ({cfg.student.name}), seed {cfg.seed}, {steps} student "
    f"steps, batch {cfg.train.batch_size}; {splits} / {len(ds.test)} test examples; {dp.size} "
    f"{dp.devices[0].platform} device(s)"
  )

  def evaluation(step):
    params, model_state = dp.local((state.student.params, state.student.model_state))
    val = run.evaluate(params, model_state, ds.val.x, ds.val.y)
    test = run.evaluate(params, model_state, ds.test.x, ds.test.y)
    if on_eval is not None:
      on_eval(step, dp.local(state))
    # Detection and segmentation: `accuracy` is the task's metric (mAP@0.5, mean IoU), and their
    # evaluators add other numbers (l2t_jax.tasks), recorded as val_* and test_* too.
    extra = {
      f"{split}_{k}": v
      for split, r in (("val", val), ("test", test))
      for k, v in r.items()
      if k not in ("accuracy", "loss")
    }
    return {
      "kind": "eval",
      "step": step,
      "val_accuracy": val["accuracy"],
      "val_loss": val["loss"],
      "test_accuracy": test["accuracy"],
      "test_loss": test["loss"],
      **extra,
    }

  if resumed:
    start = resumed["step"]
    records = (
      read_metrics(workdir) if os.path.exists(os.path.join(workdir, "metrics.jsonl")) else []
    )
    evals = [r for r in records if r["kind"] == "eval"] or [evaluation(start)]  # (no shared disk)
    trains = [r for r in records if r["kind"] == "train"]
    last_train = trains[-1] if trains else {}
    since_log = [CycleMetrics(*np.asarray(m, np.float32)) for m in resumed["pending_metrics"]]
    wall_before = resumed["wall_seconds"]
    log(f"resumed from the checkpoint at step {start} in {ckpt_dir}")
  else:
    start, last_train, since_log, wall_before = 0, {}, [], 0.0
    evals = [evaluation(0)]  # the untrained student: where every curve starts
    writer.write(evals[0])
  seen_counters = {key: last_train.get(key, 0) for key, _ in SKIP_COUNTERS}
  compile_seconds = 0.0
  t_log, step_log = time.time(), start
  t_after_first, first_step = None, start + interval
  diverged_at = None

  def save(step):
    pending = [[float(v) for v in to_python(m)] for m in since_log]
    # The run's randomness is a function of (seed, step): init from the seed, batch order and
    # augmentation from (seed, step); both are recorded, with the whole config.
    ckpt.save(
      step,
      dp.local(state),
      {
        "seed": cfg.seed,
        "config": json.loads(cfg.to_json()),
        "metrics_bytes": writer.size(),
        "pending_metrics": pending,
        "wall_seconds": wall_before + time.time() - wall0,
      },
    )

  saving = with_checkpoints and bool(cfg.checkpoint.every)
  # One process takes SIGTERM itself; several share it through JAX's preemption service (the
  # signal handler of `jax.distributed`, which a Python handler would replace).
  stop_request = checkpoint_lib.StopRequest() if saving and not multi else contextlib.nullcontext()
  try:
    with stop_request as stop:
      cycles = parallel_lib.prefetch(cycle_inputs(run, data, start // interval, steps // interval))
      for c, (cycle_data, train_idx, val_idx) in zip(
        range(start // interval, steps // interval), cycles
      ):
        state, metrics = cycle(state, cycle_data, train_idx, val_idx)
        since_log.append(dp.local(metrics))
        first = c * interval
        step = first + interval
        if step == first_step:
          jax.block_until_ready(state)
          compile_seconds = time.time() - wall0
          t_after_first = time.time()
        last = step == steps
        stopping = parallel_lib.preempted(c) if multi else bool(stop and stop.requested)
        log_now = step // cfg.train.log_every > first // cfg.train.log_every or last
        save_now = saving and (step % cfg.checkpoint.every == 0 or last or stopping)
        if log_now or save_now:  # the only waits on the device: never a diverged checkpoint
          fetched = jax.device_get(since_log)
          diverged_at = _first_nonfinite(fetched, step, interval)
          log_now = log_now or diverged_at is not None
        if log_now:
          means = to_python(jax.tree_util.tree_map(lambda *xs: np.mean(xs), *fetched))
          counters = to_python(dp.local(state.counters)._asdict())
          now = time.time()
          record = {
            "kind": "train",
            "step": step,
            **means._asdict(),
            "nonfinite_loss": sum(int(m.nonfinite_loss) for m in fetched),
            **counters,
            "steps_per_second": (step - step_log) / max(now - t_log, 1e-9),
            "elapsed_seconds": wall_before + now - wall0,
          }
          writer.write(record)
          last_train = record
          line = (
            f"step {step:>7d}/{steps} | train loss {_fmt(record['train_loss'])} ce "
            f"{_fmt(record['train_ce'])} acc {_fmt(record['train_accuracy'], '.3f')}"
          )
          if not math.isnan(record["val_loss"]):
            line += f" | meta val loss {_fmt(record['val_loss'])}"
          log(line + f" | {_rate(record['steps_per_second'])} steps/s")
          for warning in _skip_warnings(counters, seen_counters, step_log):
            log(warning)
          since_log, t_log, step_log, seen_counters = [], now, step, counters
        if (
          step // cfg.train.eval_every > first // cfg.train.eval_every
          or last
          or diverged_at is not None
        ):
          record = evaluation(step)
          writer.write(record)
          evals.append(record)
          log(
            f"eval {step:>7d}/{steps} | val acc {_fmt(record['val_accuracy'])} loss "
            f"{_fmt(record['val_loss'])} | test acc {_fmt(record['test_accuracy'])} loss "
            f"{_fmt(record['test_loss'])}"
          )
        if diverged_at is not None:
          break
        if not multi and stop is not None and stop.requested and not stopping:
          stopping, save_now = True, saving  # SIGTERM came during this cycle's log or evaluation
        if save_now and ckpt:
          save(step)
        if stopping and not last:
          raise Interrupted(step, ckpt_dir if saving else None)
  finally:
    if ckpt:
      ckpt.close()

  jax.block_until_ready(state)
  wall = wall_before + time.time() - wall0
  final = evals[-1]
  best = max(evals, key=lambda r: (r["val_accuracy"], -r["step"]))
  counters = to_python(dp.local(state.counters)._asdict())
  cycles_timed = (final["step"] - first_step) // interval
  summary = {
    "method": cfg.method,
    "seed": cfg.seed,
    "dataset": ds.name,
    "student": cfg.student.name,
    "student_steps": steps,
    "test_accuracy": final["test_accuracy"],
    "test_loss": final["test_loss"],
    "val_accuracy": final["val_accuracy"],
    "val_loss": final["val_loss"],
    "best_val_accuracy": best["val_accuracy"],
    "best_val_step": best["step"],
    "test_accuracy_at_best_val": best["test_accuracy"],
    "final_train_ce": last_train.get("train_ce"),
    "wall_seconds": wall,
    "compile_seconds": compile_seconds,
    "steps_per_second": (
      cycles_timed * interval / (time.time() - t_after_first)
      if t_after_first and cycles_timed > 0
      else math.nan
    ),
    "devices": dp.size,
    "diverged": diverged_at is not None,
    "diverged_at_step": diverged_at,
    **counters,
  }
  text = _summary_text(summary)
  if files:
    write_json_atomic(os.path.join(files, "summary.json"), summary)
    if cfg.method == "l2t_dln" and diverged_at is None:
      path = os.path.join(files, "teacher.msgpack")
      teacher_io.save_teacher(path, dp.local(state.teacher.teacher_params), cfg.teacher)
      text += f"\nteacher saved to   {path} (start a run from it: teacher_init='{path}')"
  log(text)
  if diverged_at is not None:
    raise Diverged(summary, cfg.optim.learning_rate, workdir)
  return TrainResult(summary, state, run.method)
