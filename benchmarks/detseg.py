"""Detection and segmentation on the shapes scenes: the standard loss against L2T-DLN.

  python benchmarks/detseg.py --out=benchmarks/results/detseg [--tasks=yolo,seg] [--seeds=3]
         [--steps=1500] [--set=KEY=VALUE ...]

For each task (configs/shapes_yolo.py, configs/shapes_seg.py) and each seed it trains the student
on the task's standard loss (`ce`: the YOLO-v3 loss with BCE terms; per-pixel cross-entropy) and
with L2T-DLN, through `l2t_jax.train` (finished runs in OUT are reused), and writes OUT/table.md
(test mAP@0.5 and mean IoU, mean +- std over seeds, with the 11-point mAP and pixel accuracy),
OUT/results.json, and OUT/predictions.png: the first test scenes with the last seed's predictions
of each method (boxes with score above `DRAW_SCORE`; masks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import config_from_file, finished_summary, CONFIG_DIR  # noqa: E402
from benchmarks.compare_losses import apply_override, parse_override  # noqa: E402

TASKS = {
  "yolo": ("shapes_yolo", "mAP@0.5", "test_map_11point", "11-point mAP"),
  "seg": ("shapes_seg", "mIoU", "test_pixel_accuracy", "pixel accuracy"),
}
METHODS = ("ce", "l2t_dln")
SHOWN = 4  # test scenes in the picture
DRAW_SCORE = 0.3  # boxes drawn from this score on


def run(config, workdir: str, need_state: bool):
  """`(summary, final eval record, state)` of one run, reused when `workdir` holds it finished
  (then read from its files alone, the state None, unless `need_state`: it is restored)."""
  from l2t_jax.metrics import read_metrics
  from l2t_jax.train import train

  summary, state = finished_summary(workdir, config), None
  if summary is None or need_state:
    result = train(config, workdir=workdir, log=lambda _: None)
    summary, state = result.summary, result.state
  final = [r for r in read_metrics(workdir) if r["kind"] == "eval"][-1]
  return summary, final, state


def _stats(values):
  values = [v for v in values if v is not None]
  if not values:
    return float("nan"), float("nan")
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def predictions(config, state):
  """The first SHOWN test scenes (raw), the student's outputs on them, and for detection the
  layout they decode with (None for segmentation)."""
  from l2t_jax.build import detection_layout
  from l2t_jax.config import DETECTION_DATASETS
  from l2t_jax.data import shapes
  from l2t_jax.train import build_run

  built = build_run(config)
  student = state.student
  x = built.dataset.test.x[:SHOWN]
  outputs, _ = built.student.apply(student.params, student.model_state, x, False)
  _, test = shapes.load(
    config.data.shapes_seed,
    config.data.shapes_train_size,
    config.data.shapes_test_size,
    config.data.image_size,
  )
  ds = built.dataset
  detection = config.data.name in DETECTION_DATASETS
  layout = detection_layout(config, ds.input_shape, ds.train.y) if detection else None
  return test, np.asarray(outputs), layout


def _draw_boxes(ax, boxes, classes, scores, colour: str) -> None:
  import matplotlib.pyplot as plt

  from l2t_jax.data import shapes

  for (x0, y0, x1, y1), cls, score in zip(boxes, classes, scores):
    ax.add_patch(
      plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color=colour, linewidth=1)
    )
    label = shapes.CLASSES[cls] if score is None else f"{shapes.CLASSES[cls]} {score:.2f}"
    ax.text(x0, y0, label, color=colour, fontsize=6, va="bottom")


def _draw_mask(ax, mask) -> None:
  from l2t_jax.data import shapes

  shown = np.ma.masked_equal(np.asarray(mask, np.int32), shapes.IGNORE_LABEL)  # void: blank
  ax.imshow(shown, vmin=0, vmax=len(shapes.CLASSES), cmap="tab10", interpolation="nearest")


def draw(path: str, shown: dict) -> None:
  """Per task, the scenes with their ground truth (boxes; masks, the void band blank), then one
  row per method with its predictions (boxes scored from DRAW_SCORE; masks)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from l2t_jax.yolo_decode import make_detector

  rows = []
  for task, method in shown:
    if not any(t == task for t, _ in rows):
      rows.append((task, "truth"))
    rows.append((task, method))
  fig, axes = plt.subplots(len(rows), SHOWN, figsize=(2.2 * SHOWN, 2.3 * len(rows)), squeeze=False)
  for r, (task, method) in enumerate(rows):
    first = next(k for k in shown if k[0] == task)  # the truth row shows the first's scenes
    scenes, outputs, layout = shown[first if method == "truth" else (task, method)]
    size = scenes.images.shape[1]
    for i in range(SHOWN):
      ax = axes[r, i]
      ax.set_xticks([])
      ax.set_yticks([])
      if task == "seg":
        _draw_mask(ax, scenes.masks[i] if method == "truth" else np.argmax(outputs[i], -1))
      else:
        ax.imshow(scenes.images[i])
        if method == "truth":
          used = scenes.classes[i] >= 0
          _draw_boxes(ax, scenes.boxes[i][used], scenes.classes[i][used], [None] * used.sum(), "y")
        else:
          found = make_detector(layout)(outputs[i : i + 1])
          box, score, cls, ok = (np.asarray(a[0]) for a in found)
          keep = ok & (score >= DRAW_SCORE)
          _draw_boxes(ax, box[keep] * size, cls[keep], score[keep], "white")
      if i == 0:
        ax.set_ylabel(f"{task} {method}", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--tasks", default="yolo,seg")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=0, help="student steps; 0: the config's")
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    type=parse_override,
    help="KEY=VALUE config override, for every run",
  )
  args = parser.parse_args(argv)
  results, shown, lines = {}, {}, []
  for task in args.tasks.split(","):
    config_name, metric, extra_key, extra_name = TASKS[task]
    lines += [
      f"### {task} ({config_name}): test {metric} and {extra_name}, mean +- std over "
      f"{args.seeds} seeds",
      "",
      f"| method | {metric} | {extra_name} | seeds |",
      "| --- | --- | --- | --- |",
    ]
    for method in METHODS:
      values, extras = [], []
      for seed in range(args.seeds):
        config = config_from_file(os.path.join(CONFIG_DIR, f"{config_name}.py"))
        config.method, config.seed = method, seed
        if args.steps:
          config.train.steps = args.steps
          config.train.eval_every = args.steps
        config.checkpoint.every = config.train.steps  # the final state, for the picture
        for key, value in args.set:
          apply_override(config, key, value)
        workdir = os.path.join(args.out, task, method, f"seed{seed}")
        summary, final, state = run(config, workdir, need_state=seed == args.seeds - 1)
        values.append(summary["test_accuracy"])
        extras.append(final.get(extra_key))
        print(
          f"{task} {method:<8} seed {seed}: test {metric} {summary['test_accuracy']:.4f}",
          flush=True,
        )
      shown[(task, method)] = predictions(config, state)
      mean, std = _stats(values)
      extra_mean, extra_std = _stats(extras)
      results[f"{task}/{method}"] = {"values": values, "extras": extras, "mean": mean, "std": std}
      lines.append(
        f"| {method} | {mean:.4f} +- {std:.4f} | {extra_mean:.4f} +- {extra_std:.4f} "
        f"| {len(values)} |"
      )
    lines.append("")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "table.md"), "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  draw(os.path.join(args.out, "predictions.png"), shown)
  print("\n".join(lines))
  return results


if __name__ == "__main__":
  main()
