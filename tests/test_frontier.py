"""benchmarks/frontier.py: the fast-point rule and the Pareto frontier on hand-made points, and a
smoke run on IDX files of the test's own (its files' form, its reuse of finished runs, its config
file for the fast point, its refusal of a schedule that does not validate)."""

import json
import math
import shutil

import pytest

from benchmarks import frontier
from benchmarks.common import CONFIG_DIR, config_from_file


def fast_doc(path) -> str:
  text = path.read_text()
  return text[: text.index('"""', 3)]


def _point(name, gain, se, cost):
  return {"name": name, "gain": gain, "gain_se": se, "cost_vs_ce": cost}


POINTS = [
  _point("i10_k10", 2.0, 0.2, 4.4),  # the default: 80 % of its gain is 1.6
  _point("i20_k10", 1.8, 0.3, 2.3),
  _point("i20_k5", 1.0, 0.1, 2.5),  # beaten by a cheaper point
  _point("i50_k5", 1.0, 0.35, 1.3),  # kept only through its standard error: 1.0 + 0.7 >= 1.6
  _point("i50_k1", 1.3, 0.2, 1.3),  # as cheap, more gain: the fast point
  _point("i100_k1", 0.5, 0.3, 1.05),  # cheapest, but 0.5 + 0.6 < 1.6
  _point("broken", 5.0, 0.0, math.nan),  # no cost measured: never chosen, never on the frontier
]


def test_the_fast_point_is_the_cheapest_that_keeps_the_gain_within_two_standard_errors():
  assert frontier.keeps_gain(POINTS[3], 2.0) and not frontier.keeps_gain(POINTS[5], 2.0)
  assert frontier.choose_fast(POINTS, "i10_k10")["name"] == "i50_k1"
  assert frontier.choose_fast(POINTS, "i10_k10", keep=0.95)["name"] == "i20_k10"
  assert frontier.choose_fast(POINTS, "i10_k10", keep=0.2)["name"] == "i100_k1"
  # A default without a gain leaves nothing to keep.
  assert frontier.choose_fast([_point("d", -0.3, 0.2, 4.0), *POINTS[1:]], "d") is None


def test_the_frontier_is_the_highest_gain_at_no_more_cost():
  ce = _point("ce", 0.0, 0.0, 1.0)
  names = [p["name"] for p in frontier.pareto(POINTS + [ce])]
  assert names == ["ce", "i100_k1", "i50_k1", "i20_k10", "i10_k10"]
  assert [p["name"] for p in frontier.pareto([_point("slow", -1.0, 0.0, 2.0), ce])] == ["ce"]


def test_a_schedule_over_tasks_and_an_extra_point():
  rows = [
    {"task": "a", "gain": 1.0, "gain_se": 0.3, "wins": 4, "seeds": [0] * 5, "cost_vs_ce": 1.2},
    {"task": "b", "gain": 3.0, "gain_se": 0.4, "wins": 5, "seeds": [0] * 5, "cost_vs_ce": 1.4},
  ]
  mean = frontier.mean_over_tasks(rows)
  assert mean["gain"] == 2.0 and mean["gain_se"] == pytest.approx(0.25) and mean["wins"] == 9
  assert mean["cost_vs_ce"] == pytest.approx(1.3)
  assert frontier.parse_extra("wide:dln.hidden=(32, 32),meta.val_batch_size=100") == (
    "wide",
    [("dln.hidden", (32, 32)), ("meta.val_batch_size", 100)],
  )
  with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
    frontier.parse_extra("meta.val_batch_size=100")


def test_a_smoke_frontier_writes_its_files_reuses_its_runs_and_a_config(tmp_path, capsys):
  from test_idx import write_dataset

  write_dataset(tmp_path / "data", train=60, test=20)
  configs = tmp_path / "configs"  # the fast config loads configs/fashion_mnist.py from beside it
  configs.mkdir()
  for name in ("fashion_mnist.py", "mnist1d_mlp.py"):
    shutil.copy(f"{CONFIG_DIR}/{name}", configs / name)
  out = tmp_path / "frontier"
  tasks = ["fmnist_mlp_sym40", "fmnist_mlp_pair40"]
  argv = [
    "--smoke",
    f"--out={out}",
    "--intervals=2",
    "--unrolls=1,2",
    f"--data_dir={tmp_path / 'data'}",
  ]
  report = frontier.main(argv + [f"--write_config={configs / 'fashion_mnist_fast.py'}"])
  assert "[6/6]" in capsys.readouterr().out  # CE and two schedules on each of the two tasks

  saved = json.loads((out / "frontier.json").read_text())
  assert [(p["task"], p["name"]) for p in saved["points"]] == [
    (t, n) for t in tasks for n in ("i2_k1", "i2_k2")
  ]
  for p in saved["points"]:
    assert {"interval", "unroll_steps", "gain", "gain_se", "wins", "cost_vs_ce"} <= set(p)
    assert len(p["test_accuracy"]) == len(p["seeds"]) == 1 and p["interval"] == 2
    ran = json.loads((out / p["runs"] / "seed0" / "config.json").read_text())
    assert (ran["meta"]["interval"], ran["meta"]["unroll_steps"]) == (2, p["unroll_steps"])
    kind = {"fmnist_mlp_sym40": "symmetric", "fmnist_mlp_pair40": "pair"}[p["task"]]
    assert ran["data"]["label_noise_kind"] == kind
    assert ran["data"]["data_dir"] == str(tmp_path / "data")
  assert set(saved["tasks"]) == set(tasks)
  assert {"ce_mean", "ce_training_seconds", "rate"} <= set(saved["tasks"][tasks[0]])
  assert saved["tasks"][tasks[0]]["rate"] == 0.1  # the task's own
  assert [s["name"] for s in saved["mean"]] == ["i2_k1", "i2_k2"]
  assert saved["default_point"] == "i2_k1"  # the smoke config's own schedule
  assert saved["fast_config"] == str(configs / "fashion_mnist_fast.py")
  assert saved["command"] == report["config"]["command"]
  assert (out / "frontier.png").stat().st_size > 0
  assert "| i2_k1 (default) |" in (out / "frontier.md").read_text()
  written = configs / "fashion_mnist_fast.py"
  assert written.exists() == (saved["fast_point"] is not None)  # none where no gain is kept
  point = saved["fast_point"] or saved["mean"][1]
  written.write_text(frontier.config_text(saved, point))
  fast = config_from_file(str(written))
  assert fast.data.name == "fashion_mnist" and fast.student.hidden == (500, 300)
  assert (fast.meta.interval, fast.meta.unroll_steps) == (2, point["unroll_steps"])
  assert f"{point['gain']:+.2f} +- {point['gain_se']:.2f} points" in fast_doc(written)

  # Again with an extra point: only that one trains.
  report = frontier.main(argv + ["--extra=val4:meta.val_batch_size=4"])
  printed = capsys.readouterr().out
  assert printed.count("(reused ") == 6 and "[8/8]" in printed
  extra = next(p for p in report["points"] if p["name"] == "val4")
  ran = json.loads((out / extra["runs"] / "seed0" / "config.json").read_text())
  assert ran["meta"]["val_batch_size"] == 4 and ran["meta"]["interval"] == 2

  # A schedule that does not fit the run's steps is refused before any run, by name.
  with pytest.raises(SystemExit):
    frontier.main(argv[:2] + ["--intervals=2,3", "--unrolls=1", f"--out={tmp_path / 'bad'}"])
  assert "point i3_k1 on fmnist_mlp_sym40" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    frontier.main(["--smoke", "--intervals=4", f"--out={tmp_path / 'bad'}"])
  assert "is not in the grid" in capsys.readouterr().err
  assert not (tmp_path / "bad").exists()
