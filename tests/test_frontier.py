"""benchmarks/frontier.py: the fast-point rule and the Pareto frontier on hand-made points, and a
smoke run on IDX files of the test's own (its files' form, its reuse of finished runs, its config
file for the fast point, its refusal of a schedule that does not validate)."""

import json
import math
import shutil

import pytest

from benchmarks import frontier
from benchmarks.common import CONFIG_DIR, ROOT, config_from_file
from l2t_jax import validate


def fast_doc(path) -> str:
  text = path.read_text()
  return text[: text.index('"""', 3)]


def _point(name, gain, se, cost, per_task=None):
  """A schedule over tasks; of one task (gain, se) unless `per_task` gives each task's."""
  per_task = per_task or {"a": (gain, se)}
  return {
    "name": name,
    "gain": gain,
    "gain_se": se,
    "cost_vs_ce": cost,
    "per_task": {t: {"gain": g, "gain_se": s} for t, (g, s) in per_task.items()},
  }


POINTS = [
  _point("i10_k10", 2.0, 0.2, 4.4),  # the default: 80 % of its gain is 1.6
  _point("i20_k10", 1.8, 0.3, 2.3),
  _point("i20_k5", 1.0, 0.1, 2.5),  # beaten by a cheaper point
  _point("i50_k5", 1.0, 0.6, 1.3),  # kept only through its standard error: 1.0 + 0.6 >= 1.6
  _point("i50_k1", 1.3, 0.3, 1.3),  # as cheap, more gain: the fast point
  _point("i100_k1", 1.2, 0.3, 1.05),  # cheapest, but 1.2 + 0.3 < 1.6
  _point("broken", 5.0, 0.0, math.nan),  # no cost measured: never chosen, never on the frontier
]


def test_the_fast_point_is_the_cheapest_that_keeps_the_gain_within_one_standard_error():
  assert frontier.keeps_gain(POINTS[3], POINTS[0]) and not frontier.keeps_gain(POINTS[5], POINTS[0])
  assert frontier.choose_fast(POINTS, "i10_k10")["name"] == "i50_k1"
  assert frontier.choose_fast(POINTS, "i10_k10", keep=0.95)["name"] == "i20_k10"
  assert frontier.choose_fast(POINTS, "i10_k10", keep=0.5)["name"] == "i100_k1"
  # A default without a gain leaves nothing to keep.
  assert frontier.choose_fast([_point("d", -0.3, 0.2, 4.0), *POINTS[1:]], "d") is None


def test_a_large_gain_on_one_task_does_not_carry_a_loss_on_another():
  # The mean of "cheap" keeps 80 % of the default's mean (10.0 of 11.0), but on task b it keeps
  # 45 % (1.0 + 0.3 < 0.8 * 2.2): the rule asks it of every task where the default gains, and a
  # task where the default loses (c) asks nothing.
  default = _point("default", 7.0, 0.8, 2.5, {"a": (20.0, 1.7), "b": (2.2, 0.6), "c": (-1.0, 0.5)})
  cheap = _point("cheap", 6.0, 0.7, 1.1, {"a": (19.0, 1.8), "b": (1.0, 0.3), "c": (-2.0, 0.5)})
  kept = _point("kept", 6.8, 0.7, 1.4, {"a": (19.7, 1.8), "b": (1.7, 0.6), "c": (-3.0, 0.5)})
  assert not frontier.keeps_gain(cheap, default) and frontier.keeps_gain(kept, default)
  assert frontier.choose_fast([default, cheap, kept], "default")["name"] == "kept"
  loses = _point("d", -1.0, 0.2, 2.5, {"a": (-1.0, 0.2), "b": (0.0, 0.1)})
  assert frontier.choose_fast([loses, cheap, kept], "d") is None


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
  assert mean["per_task"] == {
    "a": {"gain": 1.0, "gain_se": 0.3},
    "b": {"gain": 3.0, "gain_se": 0.4},
  }
  assert frontier.parse_extra("wide:dln.hidden=(32, 32),meta.val_batch_size=100") == (
    "wide",
    [("dln.hidden", (32, 32)), ("meta.val_batch_size", 100)],
  )
  with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
    frontier.parse_extra("meta.val_batch_size=100")


def test_the_rates_are_those_the_suites_ce_sweep_chose(tmp_path, capsys):
  committed = frontier.swept_rates(frontier.RATES_FROM)
  results = json.loads(open(frontier.RATES_FROM).read())["tasks"]
  for task in ("fmnist_mlp_sym40", "fmnist_mlp_pair40"):
    assert committed[task] == results[task]["methods"]["l2t_dln"]["learning_rate"]
  missing = tmp_path / "results.json"
  missing.write_text(json.dumps({"tasks": {"fmnist_mlp_sym40": {"methods": {}}}}))
  with pytest.raises(SystemExit):
    frontier.main([f"--out={tmp_path / 'out'}", f"--rates_from={missing}"])
  assert f"--rates_from {missing}: 'ce'" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


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
  assert "| i2_k1 (default)" in (out / "frontier.md").read_text()  # and fast, if it gains
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


def test_the_committed_fast_config_is_the_rules_choice_from_the_committed_frontier():
  """benchmarks/results/frontier/frontier.json: its fast point is what the rule picks from its own
  schedules, and the config file it names is configs/fashion_mnist.py with that point's overrides."""
  with open(f"{ROOT}/benchmarks/results/frontier/frontier.json") as f:
    saved = json.load(f)
  assert not saved["config"]["smoke"] and len(saved["config"]["seeds"]) >= 5
  chosen = frontier.choose_fast(saved["mean"], saved["default_point"], saved["rule"]["keep"])
  assert chosen is not None and chosen["name"] == saved["fast_point"]["name"]
  assert saved["fast_config"] == "configs/fashion_mnist_fast.py"
  fast = validate(config_from_file(f"{ROOT}/{saved['fast_config']}:mlp"))
  expected = config_from_file(f"{CONFIG_DIR}/fashion_mnist.py:mlp")
  for key, value in chosen["overrides"]:
    section, name = key.split(".")
    expected[section][name] = value
  assert fast.to_dict() == validate(expected).to_dict()
