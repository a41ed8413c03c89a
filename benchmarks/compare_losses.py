"""Learned loss against hand-made losses on MNIST-1D: test accuracy over seeds, curves, the DLN.

  python benchmarks/compare_losses.py --student mlp --out out/compare
  python benchmarks/compare_losses.py --student cnn --seeds 5 --label_noise 0.4 --out out/compare
  python benchmarks/compare_losses.py --methods ce,l2t_dln --set meta.teacher_every=2 --out out/x

Every method trains the same student with the same optimizer, steps, seeds and batch order (its
config is the student's config with `method` changed, plus the `--set` overrides):
  ce                    cross-entropy; its learning rate is swept over --ce_lrs on every seed and
                        the rate of the best mean final validation accuracy is reported
  ce_trainval           cross-entropy on train+val at that rate (no validation split left: n/a)
  label_smoothing, l2t_dlf   at that rate too (the config's own when CE is not run); L2T-DLF's
                        teacher sees the whole validation split each segment, as published,
                        whatever the config's meta.val_batch_size (with half, it collapses)
  ce_cosine             cross-entropy with a cosine-decayed rate, its peak swept over --ce_lrs the
                        same way: a hand-made schedule, for reference (a learned loss can act as one)
  l2t_dln               the config's own learning rate
  l2t_dln_scale_free    L2T-DLN whose teacher minimises the scale-free validation CE (CE of the
                        standardised logits): it cannot win by making the student less confident
  l2t_dln_teacher_init  L2T-DLN whose teacher starts from one trained on a separate run (seed
                        1000, a student not among the evaluated seeds; OUT/teacher_run)
Each run keeps its files in OUT/runs/<method>/seed<k> (CE: OUT/runs/ce_lr<rate>/seed<k>); a run
whose directory holds a finished run of the same config is reused (--rerun trains anew). Writes
OUT/results.json, OUT/table.md (also printed), OUT/curves.png (validation and test accuracy against
student steps, mean over seeds with the min-max band) and OUT/learned_loss.png (the DLN of the
l2t_dln run of seed 0 at five points of training, most of them early, against cross-entropy). With
--label_noise > 0 every output gets a suffix (results_noise0.4.json, runs_noise0.4/, ...) beside
the clean ones.
"""

from __future__ import annotations

import argparse
import ast
import copy
import math
import os
import shlex
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import finished_summary, load_config  # noqa: E402

STUDENT_CONFIGS = {"mlp": "mnist1d_mlp", "cnn": "mnist1d_cnn"}
METHODS = (
  "ce",
  "label_smoothing",
  "l2t_dlf",
  "l2t_dln",
  "l2t_dln_scale_free",
  "ce_trainval",
  "ce_cosine",
  "l2t_dln_teacher_init",
)
# Variants worth keeping: a method run with a few keys changed.
VARIANTS = {"l2t_dln_scale_free": ("l2t_dln", {"meta.val_objective": "scale_free_ce"})}
TEACHER_SEED = 1000  # the student the pre-trained teacher learns on: not an evaluated seed
SNAPSHOTS = "dln_snapshots.msgpack"  # the DLN at every evaluation, kept with the l2t_dln runs


def parse_override(text: str) -> tuple[str, object]:
  """`key=value` with the value read as a Python literal, or else kept as a string."""
  if "=" not in text:
    raise ValueError(f"--set {text!r}: expected key=value, e.g. meta.teacher_every=2")
  key, raw = text.split("=", 1)
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  return key.strip(), value


def apply_override(config, key: str, value) -> None:
  """Sets `config[key]` for a dotted key that the config already has."""
  node = config
  for part in key.split(".")[:-1]:
    if part not in node:
      raise ValueError(f"--set {key}: the config has no '{part}'")
    node = node[part]
  leaf = key.split(".")[-1]
  if leaf not in node:
    raise ValueError(f"--set {key}: the config has no key '{leaf}'")
  node[leaf] = value


def _finite_or_none(x):
  return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def seed_statistics(test: list[float], ce_test: list[float] | None) -> dict:
  """A method's test accuracies over seeds: their mean, sample standard deviation (0 for one
  seed) and, against CE's of the same seeds, the number of seeds it beats CE strictly (None
  without CE)."""
  return {
    "mean": float(np.mean(test)),
    "std": float(np.std(test, ddof=1)) if len(test) > 1 else 0.0,
    "wins_vs_ce": None if ce_test is None else int(sum(a > b for a, b in zip(test, ce_test))),
  }


def run_one(config, workdir: str, label: str, rerun: bool, snapshot: bool = False) -> dict:
  """The summary of one run (reused when `workdir` holds it); prints one line when it is done.
  With `snapshot`, the DLN parameters at every evaluation are saved beside it."""
  import flax.serialization
  import jax
  from l2t_jax.train import Diverged, train
  from l2t_jax.metrics import write_bytes_atomic

  needed = ("metrics.jsonl",) + ((SNAPSHOTS,) if snapshot else ())
  needed += ("teacher.msgpack",) if config.method == "l2t_dln" else ()
  summary = None if rerun else finished_summary(workdir, config, needed)
  if summary is not None:
    print(f"{label:<34} test acc {summary['test_accuracy']:.4f}  (reused {workdir})", flush=True)
    return summary
  snapshots = {}

  def on_eval(step, state):
    snapshots[str(step)] = jax.device_get(state.loss_params)

  try:  # not reusable (or --rerun): whatever run the workdir holds is replaced
    summary = train(
      config,
      workdir=workdir,
      log=lambda _: None,
      on_eval=on_eval if snapshot else None,
      overwrite=True,
    ).summary
  except Diverged as e:  # a setting that diverges counts as it ended (its summary says so)
    summary = e.summary
  if snapshot:
    write_bytes_atomic(
      os.path.join(workdir, SNAPSHOTS), flax.serialization.msgpack_serialize(snapshots)
    )
  print(
    f"{label:<34} test acc {summary['test_accuracy']:.4f}  ({summary['wall_seconds']:.1f} s)",
    flush=True,
  )
  return summary


def load_snapshots(workdir: str) -> dict[int, object]:
  import flax.serialization

  with open(os.path.join(workdir, SNAPSHOTS), "rb") as f:
    saved = flax.serialization.msgpack_restore(f.read())
  return {int(step): phi for step, phi in saved.items()}


def eval_curves(workdirs: list[str]) -> dict[str, np.ndarray]:
  """Steps and (seeds, evals) arrays of validation and test accuracy from the runs' metrics."""
  from l2t_jax.metrics import read_metrics

  runs = [[r for r in read_metrics(w) if r["kind"] == "eval"] for w in workdirs]
  steps = [r["step"] for r in runs[0]]
  return {
    "steps": np.array(steps),
    "val": np.array([[r["val_accuracy"] for r in evals] for evals in runs], float),
    "test": np.array([[r["test_accuracy"] for r in evals] for evals in runs], float),
  }


def plot_curves(curves: dict[str, dict], path: str, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
  for ax, key, name in (
    (axes[0], "val", "validation accuracy"),
    (axes[1], "test", "test accuracy"),
  ):
    for method, c in curves.items():
      values = c[key]
      if np.all(np.isnan(values)):
        continue  # ce_trainval has no validation split
      (line,) = ax.plot(c["steps"], values.mean(0), label=method)
      ax.fill_between(c["steps"], values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("student steps")
    ax.set_ylabel(name)
    ax.set_title(f"{name} (mean over seeds, min-max band)")
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_learned_loss(dln_cfg, snapshots: dict[int, object], path: str, title: str) -> None:
  """The DLN for a true-class and a wrong-class item at about five points of training (start,
  1/8, 1/4, 1/2, end), next to cross-entropy: top, the item's value against p (shifted by a
  constant, which no gradient sees, to 0 where cross-entropy's is: p -> 1 for the target, p -> 0
  for the others); bottom, its push on the item's logit as a multiple of binary cross-entropy's
  (-log p for the target, -log(1 - p) for the others; cross-entropy itself has no wrong-class
  term: 0). With a table (`dln.table_size`), the tabulated DLN, bounded if `dln.slope_bound` says
  so: the loss the student was trained on."""
  import jax
  import jax.numpy as jnp
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from l2t_jax import dln_table
  from l2t_jax.dln import make_dln

  dln = make_dln(dln_cfg)

  def item_loss_fn(phi):
    """`(p, y) -> item value` of the DLN `phi` (its table built once)."""
    if not dln_cfg.table_size:
      return lambda p, y: dln.item_loss(phi, p, y)
    table = dln_table.make_table(dln, phi, dln_cfg.table_size, dln_cfg.slope_bound)
    return lambda p, y: dln_table.table_item_loss(table, p, y)

  def push(item_loss, t, y):  # minus the slope in the item logit t, over binary CE's
    slope = jax.vmap(jax.grad(lambda s: item_loss(jax.nn.sigmoid(s), jnp.asarray(y))))(t)
    return np.asarray(-slope / jax.nn.sigmoid(-t) if y else slope / jax.nn.sigmoid(t))

  steps = sorted(snapshots)
  # The start, the end, and 1/8, 1/4 and 1/2 of the way: a student fits its training set early, so
  # the early losses are the ones that shaped it.
  targets = [steps[0]] + [steps[0] + (steps[-1] - steps[0]) / 2**k for k in (3, 2, 1, 0)]
  picks = sorted({min(steps, key=lambda s, t=t: abs(s - t)) for t in targets})
  t = np.linspace(-7.0, 6.0, 401, dtype=np.float32)  # p from 1e-3 to 1 - 2.5e-3 (float32 ratios
  # of vanishing slopes are noise beyond)
  p = 1.0 / (1.0 + np.exp(-t))
  fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
  for col, y in enumerate((1.0, 0.0)):
    top, bottom = axes[0, col], axes[1, col]
    top.plot(p, -np.log(p) if y else np.zeros_like(p), "k--", lw=2, label="cross-entropy")
    bottom.plot(p, np.full_like(p, y), "k--", lw=2, label="cross-entropy")
    for step in picks:
      item_loss = item_loss_fn(snapshots[step])
      values = np.asarray(item_loss(jnp.asarray(p), jnp.full_like(p, y)))
      top.plot(p, values - (values[-1] if y else values[0]), label=f"DLN at step {step}")
      bottom.plot(p, push(item_loss, jnp.asarray(t), y), label=f"DLN at step {step}")
    top.set_ylabel("item loss (up to a constant)")
    top.set_title("true-class item (y=1)" if y else "wrong-class item (y=0)")
    bottom.set_ylabel("push on the item's logit / binary CE's")
    bottom.set_xlabel("p (predicted probability of the class)")
    if dln_cfg.table_size and dln_cfg.slope_bound:
      bottom.set_ylim(-0.1, dln_cfg.slope_bound + 0.3)
    for ax in (top, bottom):
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def format_table(methods: dict[str, dict]) -> str:
  head = (
    "| method | test accuracy (%) mean ± std | per seed (%) | val accuracy (%) | lr | wins vs CE |"
  )
  lines = [head, "|---|---|---|---|---|---|"]
  for name, m in methods.items():
    vals = [v for v in m["val_accuracy"] if v is not None]
    val = f"{100 * np.mean(vals):.2f}" if vals else "n/a"
    wins = "-" if m["wins_vs_ce"] is None else f"{m['wins_vs_ce']}/{len(m['test_accuracy'])}"
    seeds = ", ".join(f"{100 * a:.2f}" for a in m["test_accuracy"])
    lines.append(
      f"| {name} | {100 * m['mean']:.2f} ± {100 * m['std']:.2f} | {seeds} | {val} | "
      f"{m['learning_rate']:g} | {wins} |"
    )
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--student",
    choices=sorted(STUDENT_CONFIGS),
    default="mlp",
    help="mlp: configs/mnist1d_mlp.py; cnn: configs/mnist1d_cnn.py",
  )
  parser.add_argument("--seeds", type=int, default=5, help="evaluated seeds are 0..N-1")
  parser.add_argument("--out", required=True)
  parser.add_argument(
    "--label_noise",
    type=float,
    default=0.0,
    help="data.label_noise (symmetric noise on the training split)",
  )
  parser.add_argument(
    "--steps", type=int, default=None, help="student steps (default: the config's)"
  )
  parser.add_argument(
    "--ce_lrs",
    default="0.03,0.05,0.1,0.15,0.2",
    help="learning rates of the CE sweep, comma-separated",
  )
  parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {METHODS}")
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="config override applied to every method, e.g. meta.teacher_every=2 "
    "(repeatable; the value is read as a Python literal)",
  )
  parser.add_argument(
    "--rerun",
    action="store_true",
    help="train every run anew, even where its directory holds it finished",
  )
  args = parser.parse_args(argv)
  command = shlex.join(
    [
      sys.argv[0] if argv is None else "benchmarks/compare_losses.py",
      *(sys.argv[1:] if argv is None else argv),
    ]
  )

  methods = args.methods.split(",")
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    parser.error(f"--methods: unknown {unknown}; known: {METHODS}")
  ce_lrs = [float(x) for x in args.ce_lrs.split(",")]
  seeds = list(range(args.seeds))
  base = load_config(STUDENT_CONFIGS[args.student])
  base.data.label_noise = args.label_noise
  if args.steps is not None:
    base.train.steps = args.steps
  try:
    for text in args.set:
      apply_override(base, *parse_override(text))
  except (ValueError, TypeError, KeyError) as e:
    parser.error(str(e))

  suffix = f"_noise{args.label_noise:g}" if args.label_noise > 0 else ""
  out = args.out
  runs_dir = os.path.join(out, f"runs{suffix}")
  os.makedirs(out, exist_ok=True)
  print(
    f"compare_losses: {args.student} student, {base.train.steps} steps, seeds {seeds}, label "
    f"noise {args.label_noise:g}, methods {methods}",
    flush=True,
  )

  def config_for(method: str, seed: int, **changes):
    c = copy.deepcopy(base)
    c.method, c.seed = method, seed
    for key, value in changes.items():
      apply_override(c, key, value)
    return c

  def run_seeds(name: str, method: str, snapshot_seed0: bool = False, **changes) -> list[dict]:
    rows = []
    for seed in seeds:
      workdir = os.path.join(runs_dir, name, f"seed{seed}")
      summary = run_one(
        config_for(method, seed, **changes),
        workdir,
        f"{name} seed {seed}",
        args.rerun,
        snapshot=snapshot_seed0 and seed == 0,
      )
      rows.append({"summary": summary, "workdir": workdir})
    return rows

  from l2t_jax.config import ConfigError, default_config, validate

  try:  # every method's config, checked before the first run starts
    for method in ("ce", "label_smoothing", "l2t_dlf", "l2t_dln"):
      validate(config_for(method, 0))
  except ConfigError as e:
    parser.error(f"the config with these options does not work: {e}")

  results: dict[str, list[dict]] = {}
  rates: dict[str, float] = {}
  sweeps: dict[str, dict] = {}  # per swept method: rate -> mean val and test accuracy

  def lr_sweep(prefix: str, **changes):
    """Runs CE at every rate of --ce_lrs; returns the runs and the rate of the best mean final
    validation accuracy, and records the sweep."""
    by_lr, table = {}, sweeps.setdefault(prefix, {})
    for lr in ce_lrs:
      by_lr[lr] = run_seeds(f"{prefix}_lr{lr:g}", "ce", **{"optim.learning_rate": lr, **changes})
      table[f"{lr:g}"] = {
        "val_accuracy": float(np.mean([r["summary"]["val_accuracy"] for r in by_lr[lr]])),
        "test_accuracy": float(np.mean([r["summary"]["test_accuracy"] for r in by_lr[lr]])),
      }
    best = max(ce_lrs, key=lambda lr: table[f"{lr:g}"]["val_accuracy"])
    return by_lr[best], best

  if "ce" in methods or "ce_trainval" in methods:
    ce_runs, best_lr = lr_sweep("ce")
    rates["ce"] = best_lr
    if "ce" in methods:
      results["ce"] = ce_runs
  if "ce_cosine" in methods:
    results["ce_cosine"], rates["ce_cosine"] = lr_sweep("ce_cosine", **{"optim.schedule": "cosine"})
  for method in methods:
    if method in ("label_smoothing", "l2t_dlf"):  # the baselines get CE's best rate, if swept
      rate = rates.get("ce", base.optim.learning_rate)
      changes = {"optim.learning_rate": rate}
      if method == "l2t_dlf":  # its teacher as published: the whole validation split each time
        changes["meta.val_batch_size"] = default_config().meta.val_batch_size
      results[method] = run_seeds(method, method, **changes)
      rates[method] = rate
    elif method == "l2t_dln":
      results[method] = run_seeds(method, method, snapshot_seed0=True)
      rates[method] = base.optim.learning_rate
    elif method in VARIANTS:
      parent, changes = VARIANTS[method]
      results[method] = run_seeds(method, parent, **changes)
      rates[method] = base.optim.learning_rate
    elif method == "ce_trainval":
      results[method] = run_seeds(
        method, "ce", **{"optim.learning_rate": best_lr, "data.use_val_for_training": True}
      )
      rates[method] = best_lr
    elif method == "l2t_dln_teacher_init":
      teacher_dir = os.path.join(out, f"teacher_run{suffix}")
      run_one(
        config_for("l2t_dln", TEACHER_SEED),
        teacher_dir,
        f"teacher run (l2t_dln seed {TEACHER_SEED})",
        args.rerun,
      )
      results[method] = run_seeds(
        method, "l2t_dln", teacher_init=os.path.join(teacher_dir, "teacher.msgpack")
      )
      rates[method] = base.optim.learning_rate

  order = [m for m in METHODS if m in results]
  ce_test = [r["summary"]["test_accuracy"] for r in results["ce"]] if "ce" in results else None
  table_rows = {}
  for method in order:
    test = [r["summary"]["test_accuracy"] for r in results[method]]
    val = [
      None if method == "ce_trainval" else _finite_or_none(r["summary"]["val_accuracy"])
      for r in results[method]
    ]
    table_rows[method] = {
      "test_accuracy": test,
      "val_accuracy": val,
      **seed_statistics(test, ce_test),
      "learning_rate": rates[method],
    }

  report = {
    "student": args.student,
    "label_noise": args.label_noise,
    "steps": base.train.steps,
    "seeds": seeds,
    "methods": table_rows,
    "ce_lr_sweep": sweeps.get("ce", {}),
    "ce_cosine_lr_sweep": sweeps.get("ce_cosine", {}),
    "command": command,
  }
  from l2t_jax.metrics import write_json_atomic

  results_path = os.path.join(out, f"results{suffix}.json")
  write_json_atomic(results_path, report)

  title = f"MNIST-1D, {args.student} student, {base.train.steps} steps, {len(seeds)} seed(s)" + (
    f", label noise {args.label_noise:g}" if args.label_noise > 0 else ""
  )
  curves = {m: eval_curves([r["workdir"] for r in results[m]]) for m in order}
  if "ce_trainval" in curves:  # it trains on the validation split: its accuracy there means nothing
    curves["ce_trainval"]["val"][:] = np.nan
  plot_curves(curves, os.path.join(out, f"curves{suffix}.png"), title)
  written = [results_path, os.path.join(out, f"curves{suffix}.png")]
  if "l2t_dln" in results and 0 in seeds:
    path = os.path.join(out, f"learned_loss{suffix}.png")
    plot_learned_loss(
      base.dln,
      load_snapshots(results["l2t_dln"][0]["workdir"]),
      path,
      f"The DLN of the l2t_dln run of seed 0 ({title})",
    )
    written.append(path)

  text = [f"## {title}", ""]
  for name, sweep in sweeps.items():
    text += [
      f"{name} learning-rate sweep (mean over seeds; chosen by validation accuracy: "
      f"{rates[name]:g}):",
      "",
      "| lr | val accuracy (%) | test accuracy (%) |",
      "|---|---|---|",
    ]
    text += [
      f"| {lr} | {100 * s['val_accuracy']:.2f} | {100 * s['test_accuracy']:.2f} |"
      for lr, s in sweep.items()
    ]
    text.append("")
  text.append(format_table(table_rows))
  table = "\n".join(text) + "\n"
  table_path = os.path.join(out, f"table{suffix}.md")
  with open(table_path, "w") as f:
    f.write(table)
  written.append(table_path)
  print("\n" + table)
  print("wrote " + ", ".join(written))
  return report


if __name__ == "__main__":
  main()
