"""Speed and memory of meta-training against plain training, measured in one process.

For each student: per-student-step time of CE, of L2T-DLN with the config's schedule (`default`),
and of the synchronous meta-segment (every segment differentiated: interval = K); compile time;
and the peak memory of the differentiated cycle against K, for each rematerialisation policy.
Times are medians over interleaved repeats after warm-up; each ratio is the median over repeats of
the two times in the same repeat, from this run only.
On the MLP student the same run also times the authors' protocol's meta-iteration (two unrolls,
configs/reference_mnist1d_mlp.py) and, when torch is installed (`pip install -e '.[peer]'`), a
PyTorch peer of both (benchmarks/peer_torch.py: torch.func and `higher`) with a CE step of its own,
interleaved with ours.

  python benchmarks/speed.py --quick --out out/speed_quick   # the headline ratios, in minutes
  python benchmarks/speed.py --out out/speed                 # MNIST-1D MLP and CNN on this machine
  python benchmarks/speed.py --out out/speed_gpu --students resnet8   # synthetic CIFAR-shaped data

Peak memory is the compiled program's own account (`memory_analysis()`: arguments + outputs +
temporaries - donated aliases), the same number on every backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from l2t_jax import build, losses  # noqa: E402
from l2t_jax.methods import dln_method  # noqa: E402
from l2t_jax.student_loss import FunctionLoss  # noqa: E402
from benchmarks import peer_torch  # noqa: E402
from benchmarks.common import load_config, synthetic_dataset  # noqa: E402
from l2t_jax.data import Dataset, load_dataset  # noqa: E402
from l2t_jax.train import build_run, cycle_indices, data_arrays, device_data  # noqa: E402

# Students measured, with the experiment config each is measured in.
CONFIGS = {
  "mlp": "mnist1d_mlp",
  "cnn1d": "mnist1d_cnn",
  "resnet8": "cifar10_resnet8",
  "resnet32": "cifar10_resnet32",
}
SYNTHETIC = {"resnet8": ((32, 32, 3), 10), "resnet32": ((32, 32, 3), 10)}  # no download needed
REFERENCE_CONFIG = "reference_mnist1d_mlp"  # the authors' protocol on the MLP student
PEER_MODES = ("func", "higher")  # benchmarks/peer_torch.py


def student_config(name: str):
  if name not in CONFIGS:
    raise SystemExit(f"unknown student '{name}'; known: {', '.join(CONFIGS)}")
  config = load_config(CONFIGS[name])
  config.checkpoint.every = 0
  return config


class Subject:
  """One method under one schedule: its jitted cycle, compiled ahead of time, ready to time."""

  def __init__(self, config, dataset: Dataset, cycles: int, method=None):
    self.run = build_run(config, dataset)
    if method is not None:
      self.run = self.run._replace(method=method(self.run))
    self.interval = config.meta.interval
    ds = self.run.dataset
    self.data = device_data(ds, config.data.split)
    indices = list(cycle_indices(self.run, 0, cycles))
    self.train_idx = [t for t, _ in indices]
    self.val_idx = [v for _, v in indices]
    self.state = self.run.method.init(jax.random.PRNGKey(0), jnp.asarray(ds.train.x[:1]))
    t0 = time.perf_counter()
    self.cycle = (
      self.run.parallel.compile_cycle(self.run.method.cycle, config.train.fast_compile)
      .lower(self.state, self.data, self.train_idx[0], self.val_idx[0])
      .compile()
    )
    self.compile_seconds = time.perf_counter() - t0
    self.memory = memory_bytes(self.cycle)

  def settle(self) -> None:
    """One untimed cycle. The first cycles of a program after another program ran are slower here
    (about 15 % on the CPU: caches and buffers left by the other); that is not this program's
    cost, and in an interleaved round it would fall on whichever subject runs after a switch."""
    self.state, _ = self.cycle(self.state, self.data, self.train_idx[0], self.val_idx[0])
    jax.block_until_ready(self.state)

  def time_per_step(self) -> float:
    """Seconds per student step over one pass through the prepared cycles."""
    jax.block_until_ready(self.state)
    t0 = time.perf_counter()
    for t, v in zip(self.train_idx, self.val_idx):
      self.state, _ = self.cycle(self.state, self.data, t, v)
    jax.block_until_ready(self.state)
    return (time.perf_counter() - t0) / (len(self.train_idx) * self.interval)


def memory_bytes(compiled) -> dict:
  m = compiled.memory_analysis()
  if m is None:
    return {}
  peak = (
    m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
  )
  return {
    "peak_bytes": int(peak),
    "temp_bytes": int(m.temp_size_in_bytes),
    "argument_bytes": int(m.argument_size_in_bytes),
  }


def variants(base, intervals=()):
  """CE and L2T-DLN with the config's schedule, the synchronous meta-segment, the same
  meta-segment with the cheapest possible learned loss (floor), and L2T-DLN with K differentiated
  steps in every cycle of each of `intervals` steps (the asynchronous schedule)."""
  out = {}
  rows = [
    ("ce", "ce", base.meta.interval),
    ("default", "l2t_dln", base.meta.interval),
    ("meta_segment", "l2t_dln", base.meta.unroll_steps),
    ("meta_segment_floor", "l2t_dln", base.meta.unroll_steps),
  ]
  rows += [(f"interval_{n}", "l2t_dln", n) for n in intervals]
  for name, method, interval in rows:
    c = base.copy_and_resolve_references()
    c.method, c.meta.interval = method, interval
    out[name] = c
  return out


def floor_method(run):
  """The meta-segment machinery (unroll, hypergradient, teacher, window) around a learned loss
  that costs nothing beyond cross-entropy: one scalar weight on it. It bounds what any DLN can
  reach with this student, optimizer and schedule."""
  config = run.config
  segments = build.make_segments(config, run.student, run.optimizer, run.dataset.num_classes)
  weighted_ce = FunctionLoss(
    lambda rng: {"weight": jnp.ones(())},
    lambda lp, logits, labels: lp["weight"] * losses.cross_entropy(logits, labels),
  )
  return dln_method(segments, weighted_ce, build.make_teaching(config))


def cycles_for(config, steps_per_repeat: int, repeats: int) -> int:
  """Cycles per timed repeat; sets `train.steps` to cover the warm-up and every repeat."""
  cycles = max(1, steps_per_repeat // config.meta.interval)
  config.train.steps = config.meta.interval * cycles * (repeats + 2)
  return cycles


def peer_subjects(subjects: dict, dataset: Dataset, log, device: str = "cpu") -> dict:
  """PyTorch peers of our CE, meta-segment and reference subjects, on the same batches, their
  tensors on torch's `device`."""
  reason = peer_torch.unavailable()
  if reason:
    log(f"  no PyTorch peer: {reason}")
    return {}
  out = {}
  for ours, mode, key in [("ce", "ce", "peer_ce")] + [
    (o, m, f"peer_{k}_{m}")
    for o, k in (("meta_segment", "meta"), ("reference_meta", "reference"))
    for m in PEER_MODES
    if o in subjects
  ]:
    if mode == "higher" and peer_torch.unavailable("higher"):
      log(f"  no {key}: {peer_torch.unavailable('higher')}")
      continue
    subject = subjects[ours]
    setting = peer_torch.Setting.from_config(
      subject.run.config,
      int(np.prod(dataset.train.x.shape[1:])),
      dataset.num_classes,
      subject.run.val_batch_size,
    )
    data = data_arrays(dataset, subject.run.config.data.split)
    out[key] = peer_torch.Peer(
      setting,
      mode,
      data,
      [np.asarray(t) for t in subject.train_idx],
      [np.asarray(v) for v in subject.val_idx],
      device=device,
    )
  return out


def measure_student(
  name: str,
  dataset: Dataset | None,
  repeats: int,
  steps_per_repeat: int,
  ks: list[int],
  policies: list[str],
  log,
  intervals=(),
  peers: bool = False,
  reference: bool = True,
  peer_device: str = "cpu",
) -> dict:
  """Times of every variant of `name`, interleaved; with `peers` (the MLP) also the PyTorch
  peers and, with `reference`, the reference protocol's meta-iteration (ours and the peers')."""
  base = student_config(name)
  base.train.batch_size = 128
  if dataset is None:
    dataset = load_dataset(base)
  subjects, built = {}, {}
  for key, config in variants(base, intervals).items():
    cycles = cycles_for(config, steps_per_repeat, repeats)
    method = floor_method if key == "meta_segment_floor" else None
    program = config.to_json() if method is None else key  # the floor's method is its own
    if program in built:  # e.g. the default when its interval is K: the meta-segment's program
      subjects[key] = subjects[built[program]]
      log(f"  [{name}] {key}: the same program as {built[program]}")
      continue
    subjects[key] = Subject(config, dataset, cycles, method)
    built[program] = key
    log(f"  [{name}] {key}: compiled in {subjects[key].compile_seconds:.2f} s")
  if peers and reference:
    config = load_config(REFERENCE_CONFIG)
    config.checkpoint.every = 0
    subjects["reference_meta"] = Subject(
      config, dataset, cycles_for(config, steps_per_repeat, repeats)
    )
    log(
      f"  [{name}] reference_meta: compiled in {subjects['reference_meta'].compile_seconds:.2f} s"
    )
  if peers:
    subjects.update(peer_subjects(subjects, dataset, log, peer_device))
  times = {key: [] for key in subjects}
  for s in subjects.values():
    s.time_per_step()  # warm-up
  for _ in range(repeats):  # interleaved, so that machine load affects every method alike
    for key, s in subjects.items():
      if isinstance(s, Subject):
        s.settle()
      times[key].append(s.time_per_step())
  median = {key: statistics.median(v) for key, v in times.items()}
  ratio = lambda a, b: paired_ratio(times, a, b)  # noqa: E731
  result = {
    "batch_size": base.train.batch_size,
    "unroll_steps": base.meta.unroll_steps,
    "interval": base.meta.interval,
    "teacher_every": base.meta.teacher_every,
    "us_per_step": {k: v * 1e6 for k, v in median.items()},
    "us_per_step_all": {k: [x * 1e6 for x in v] for k, v in times.items()},
    "ratio_meta_segment_vs_ce": ratio("meta_segment", "ce"),
    "ratio_default_vs_ce": ratio("default", "ce"),
    "ratio_meta_segment_floor_vs_ce": ratio("meta_segment_floor", "ce"),
    "ratio_meta_vs_floor": ratio("meta_segment", "meta_segment_floor"),
    "ratio_meta_vs_floor_each_round": round_ratios(times, "meta_segment", "meta_segment_floor"),
    "ratio_interval_vs_ce": {n: ratio(f"interval_{n}", "ce") for n in intervals},
    "compile_seconds": {
      k: s.compile_seconds for k, s in subjects.items() if not k.startswith("peer_")
    },
    "memory_bytes": {k: s.memory for k, s in subjects.items() if not k.startswith("peer_")},
  }
  if peers:
    result["peer"] = peer_ratios(times)
  rows = []
  for policy in policies:
    for k in ks:
      config = base.copy_and_resolve_references()
      config.meta.unroll_steps = config.meta.interval = k
      config.meta.remat = policy
      config.train.steps = k
      run = build_run(config, dataset)
      state = run.method.init(jax.random.PRNGKey(0), jnp.asarray(dataset.train.x[:1]))
      idx = jnp.zeros((k, config.train.batch_size), jnp.int32)
      vidx = jnp.zeros((run.val_batch_size,), jnp.int32)
      t0 = time.perf_counter()
      compiled = (
        run.parallel.compile_cycle(run.method.cycle, run.config.train.fast_compile)
        .lower(state, device_data(dataset), idx, vidx)
        .compile()
      )
      rows.append(
        {
          "K": k,
          "remat": policy,
          **memory_bytes(compiled),
          "compile_seconds": time.perf_counter() - t0,
        }
      )
      log(
        f"  [{name}] memory K={k} remat={policy}: {rows[-1].get('peak_bytes', 0) / 2**20:.1f} MiB"
      )
  result["memory_vs_K"] = rows
  for policy in policies:
    by_k = {r["K"]: r.get("peak_bytes") for r in rows if r["remat"] == policy}
    if ks and by_k.get(min(ks)):
      result.setdefault("memory_ratio_maxK_vs_minK", {})[policy] = by_k[max(ks)] / by_k[min(ks)]
  return result


def round_ratios(times: dict, a: str, b: str) -> list[float]:
  """`a`'s time over `b`'s, round by round."""
  return [x / y for x, y in zip(times[a], times[b])]


def paired_ratio(times: dict, a: str, b: str) -> float:
  """The median over rounds of `a`'s time over `b`'s in the same round: load on the machine that
  drifts from round to round divides out of each round's ratio."""
  return statistics.median(round_ratios(times, a, b))


def peer_ratios(times: dict) -> dict:
  """The peer's times over ours (above 1: ours is faster), each peer and the fastest of them."""
  out = {"versions": peer_torch.versions(), "reason": peer_torch.unavailable()}
  pairs = {
    "ce": ("ce", ["peer_ce"]),
    "meta": ("meta_segment", [f"peer_meta_{m}" for m in PEER_MODES]),
    "reference": ("reference_meta", [f"peer_reference_{m}" for m in PEER_MODES]),
  }
  for name, (ours, theirs) in pairs.items():
    found = {k: paired_ratio(times, k, ours) for k in theirs if k in times}
    out[f"ratio_peer_{name}_vs_ours"] = min(found.values()) if found else None
    out[f"ratio_peer_{name}_vs_ours_each"] = found
  return out


def headline(r: dict) -> str:
  """The quick mode's lines: our meta-segment against its floor and CE, and the peer's."""
  u = r["us_per_step"]
  rounds = r["ratio_meta_vs_floor_each_round"]
  spread = ""
  if len(rounds) >= 4:  # the machine's noise: the middle half of the rounds' paired ratios
    q1, _, q3 = statistics.quantiles(rounds, n=4)
    spread = f"; middle half of the {len(rounds)} rounds {q1:.2f}-{q3:.2f}"
  lines = [
    f"meta-segment / floor (ours, {r['unroll_steps']} steps of batch {r['batch_size']}): "
    f"{r['ratio_meta_vs_floor']:.2f}  ({u['meta_segment']:.0f} / "
    f"{u['meta_segment_floor']:.0f} µs per student step{spread})",
    f"meta-segment / CE (ours): {r['ratio_meta_segment_vs_ce']:.2f}",
  ]
  if "reference_meta" in u:
    lines.append(
      f"reference meta-iteration (two unrolls) / CE (ours): "
      f"{u['reference_meta'] / u['ce']:.2f}  ({u['reference_meta']:.0f} µs per step)"
    )
  peer = r.get("peer")
  if peer and peer["reason"] is None:
    for name in ("ce", "meta", "reference"):
      if peer[f"ratio_peer_{name}_vs_ours"] is None:
        continue
      each = ", ".join(f"{k}: {v:.1f}x" for k, v in peer[f"ratio_peer_{name}_vs_ours_each"].items())
      lines.append(
        f"PyTorch peer / ours, {name}: {peer[f'ratio_peer_{name}_vs_ours']:.1f}x "
        f"(fastest peer; {each})"
      )
  elif peer:
    lines.append(f"no PyTorch peer: {peer['reason']}")
  return "\n".join(lines)


def table(results: dict) -> str:
  lines = [
    "| student | K / interval | CE µs/step | L2T-DLN default µs/step | meta-segment µs/step "
    "| floor µs/step | default / CE | meta-segment / CE | floor / CE | compile (default) s |"
    + "".join(f" interval {n} / CE |" for n in _intervals(results)),
    "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(_intervals(results)),
  ]
  for name, r in results.items():
    u = r["us_per_step"]
    lines.append(
      f"| {name} | {r['unroll_steps']} / {r['interval']} | {u['ce']:.0f} | "
      f"{u['default']:.0f} | {u['meta_segment']:.0f} | {u['meta_segment_floor']:.0f} | "
      f"{r['ratio_default_vs_ce']:.2f} | {r['ratio_meta_segment_vs_ce']:.2f} | "
      f"{r['ratio_meta_segment_floor_vs_ce']:.2f} | "
      f"{r['compile_seconds']['default']:.1f} |"
      + "".join(f" {r['ratio_interval_vs_ce'][n]:.2f} |" for n in _intervals(results))
    )
  if not _policies(results):  # --quick without --ks: no memory table
    return "\n".join(lines)
  lines += [
    "",
    "| student | K | " + " | ".join(f"peak MiB ({p})" for p in _policies(results)) + " |",
    "|---|---|" + "---|" * len(_policies(results)),
  ]
  for name, r in results.items():
    for k in sorted({row["K"] for row in r["memory_vs_K"]}):
      cells = [
        f"{row['peak_bytes'] / 2**20:.2f}" if "peak_bytes" in row else "n/a"
        for p in _policies(results)
        for row in r["memory_vs_K"]
        if row["K"] == k and row["remat"] == p
      ]
      lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _intervals(results):
  return list(next(iter(results.values()))["ratio_interval_vs_ce"])


def _policies(results):
  first = next(iter(results.values()))
  return list(dict.fromkeys(row["remat"] for row in first["memory_vs_K"]))


def plot(results: dict, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  memory = bool(_policies(results))  # --quick without --ks: the times only
  fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(11 if memory else 6, 4), squeeze=False)
  axes = axes[0]
  names = list(results)
  keys = ["ce", "default", "meta_segment", "meta_segment_floor"]
  keys += [  # the PyTorch peer's CE step and meta-segment, where measured (MLP)
    k
    for k in ("peer_ce", "peer_meta_func", "peer_meta_higher")
    if k in results[names[0]]["us_per_step"]
  ]
  width = 0.8 / len(keys)
  for i, key in enumerate(keys):
    axes[0].bar(
      np.arange(len(names)) + (i - (len(keys) - 1) / 2) * width,
      [results[n]["us_per_step"].get(key, np.nan) for n in names],
      width,
      label=key,
    )
  axes[0].set_xticks(range(len(names)), names)
  axes[0].set_ylabel("µs per student step")
  axes[0].legend()
  axes[0].set_title("time per student step")
  if memory:
    for n in names:
      for p in _policies(results):
        rows = [r for r in results[n]["memory_vs_K"] if r["remat"] == p and "peak_bytes" in r]
        axes[1].plot(
          [r["K"] for r in rows],
          [r["peak_bytes"] / 2**20 for r in rows],
          marker="o",
          label=f"{n}, remat={p}",
        )
    axes[1].set_xscale("log")
    axes[1].set_xlabel("K (differentiated student steps)")
    axes[1].set_ylabel("peak memory of the cycle (MiB)")
    axes[1].legend(fontsize=7)
    axes[1].set_title("memory against K")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def resolve_peer_device(name: str) -> str:
  """The peer's torch device: `auto` follows our backend (the GPU when both frameworks see one)."""
  if name != "auto":
    return name
  if jax.devices()[0].platform != "gpu" or peer_torch.unavailable():
    return "cpu"
  import torch

  return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument(
    "--quick",
    action="store_true",
    help="the headline ratios only: the MLP student, no memory table nor "
    "asynchronous schedules, fewer and shorter repeats (defaults below)",
  )
  parser.add_argument(
    "--students",
    default=None,
    help="comma-separated; default: mlp,cnn1d (and resnet8 when a GPU is present)",
  )
  parser.add_argument("--repeats", type=int, default=None, help="default 7 (quick: 15)")
  parser.add_argument("--steps_per_repeat", type=int, default=None, help="default 1000 (quick: 50)")
  parser.add_argument("--ks", default=None, help="default 10,50,200 (quick: none)")
  parser.add_argument("--remat", default="none,sqrt", help="comma-separated remat policies")
  parser.add_argument(
    "--intervals",
    default=None,
    help="also time L2T-DLN with K differentiated steps per cycle of this many "
    "steps (comma-separated; empty: none); default 100,500 (quick: none)",
  )
  parser.add_argument(
    "--no_reference",
    action="store_true",
    help="leave out the authors' protocol's meta-iteration (its compile is the longest of the run)",
  )
  parser.add_argument(
    "--peer_device",
    default="auto",
    help="torch device of the PyTorch peer (cpu, cuda); auto: cuda when JAX runs on a GPU and "
    "torch sees one, else cpu",
  )
  parser.add_argument(
    "--peer_threads",
    type=int,
    default=1,
    help="torch's intra-op threads for the PyTorch peer (0: torch's default)",
  )
  args = parser.parse_args(argv)
  quick = args.quick
  peer_device = resolve_peer_device(args.peer_device)
  pick = lambda value, full, short: (
    short
    if quick and value is None
    # noqa: E731
    else (full if value is None else value)
  )
  # Quick: many short rounds rather than a few long ones (the same steps in all), so that a burst
  # of load from other processes falls into one round's paired ratio, not into a fifth of them.
  repeats = pick(args.repeats, 7, 15)
  steps_per_repeat = pick(args.steps_per_repeat, 1000, 50)
  ks = [int(k) for k in pick(args.ks, "10,50,200", "").split(",") if k]
  intervals = [int(n) for n in pick(args.intervals, "100,500", "").split(",") if n]
  if args.peer_threads and not peer_torch.unavailable():
    import torch

    torch.set_num_threads(args.peer_threads)
  gpu = jax.devices()[0].platform == "gpu"
  students = (
    args.students.split(",")
    if args.students
    else ["mlp"]
    if quick
    else ["mlp", "cnn1d"] + (["resnet8"] if gpu else [])
  )
  os.makedirs(args.out, exist_ok=True)
  log = lambda m: print(m, flush=True)
  log(
    f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); PyTorch peer on {peer_device}"
  )
  results = {}
  for name in students:
    dataset = None
    if name in SYNTHETIC:
      dataset = synthetic_dataset(*SYNTHETIC[name], train=10_000, val=1000)
    results[name] = measure_student(
      name,
      dataset,
      repeats,
      steps_per_repeat,
      ks,
      args.remat.split(","),
      log,
      intervals,
      peers=name == "mlp",
      reference=not args.no_reference,
      peer_device=peer_device,
    )
  primary = results[students[0]]
  peer = results["mlp"].get("peer", {}) if "mlp" in results else {}
  out = {
    "device": jax.devices()[0].device_kind,
    "platform": jax.devices()[0].platform,
    "primary_student": students[0],
    "quick": quick,
    "ratio_meta_segment_vs_ce": primary["ratio_meta_segment_vs_ce"],
    "ratio_default_vs_ce": primary["ratio_default_vs_ce"],
    "ratio_meta_vs_floor": results["mlp"]["ratio_meta_vs_floor"] if "mlp" in results else None,
    "ratio_peer_meta_vs_ours": peer.get("ratio_peer_meta_vs_ours"),
    "ratio_peer_ce_vs_ours": peer.get("ratio_peer_ce_vs_ours"),
    "ratio_peer_reference_vs_ours": peer.get("ratio_peer_reference_vs_ours"),
    "peer_threads": args.peer_threads,
    "peer_device": peer_device,
    "ratio_interval_vs_ce": primary["ratio_interval_vs_ce"],
    "compile_seconds": primary["compile_seconds"]["default"],
    "students": results,
  }
  with open(os.path.join(args.out, "speed.json"), "w") as f:
    json.dump(out, f, indent=2)
  plot(results, os.path.join(args.out, "speed.png"))
  print(table(results))
  if "mlp" in results:
    print("\n" + headline(results["mlp"]))
  print(f"\nwrote {args.out}/speed.json and {args.out}/speed.png")
  return out


if __name__ == "__main__":
  main()
