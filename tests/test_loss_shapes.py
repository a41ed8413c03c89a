"""benchmarks/loss_shapes.py: the shapes' losses by hand, the ce shape as the library's CE run, the
suite's rates, and the smoke mode's outputs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import loss_shapes, suite
from benchmarks.common import config_from_file

# Two examples of two classes: logits (2, 0) labelled 0, and (0.5, 1.5) labelled 1.
LOGITS = jnp.array([[2.0, 0.0], [0.5, 1.5]])
LABELS = jnp.array([0, 1])
GAPS = np.array([2.0, 1.0])  # the true class's logit minus the other's


def _two_class_ce(gap):
  """Cross-entropy of a two-class example whose true logit leads by `gap`: log(1 + e^-gap)."""
  return np.log1p(np.exp(-gap))


@pytest.mark.parametrize(
  "shape, by_hand",
  [
    ("ce", _two_class_ce(GAPS).mean()),
    ("temperature:1", _two_class_ce(GAPS).mean()),
    ("temperature:2", (2 * _two_class_ce(GAPS / 2)).mean()),
    ("margin:1", _two_class_ce(GAPS - 1).mean()),  # the true logit lowered by the margin
    ("margin:0", _two_class_ce(GAPS).mean()),
    # PolyLoss: CE + eps (1 - p_y), with p_y = 1 / (1 + e^-gap) for two classes
    ("poly:-1", (_two_class_ce(GAPS) - (1 - 1 / (1 + np.exp(-GAPS)))).mean()),
    ("focal:0", _two_class_ce(GAPS).mean()),
    ("focal:2", ((1 - 1 / (1 + np.exp(-GAPS))) ** 2 * _two_class_ce(GAPS)).mean()),
    # smoothed targets (1 - s/2, s/2): CE of the true class and s/2 times the other's
    (
      "label_smoothing:0.2",
      (0.9 * _two_class_ce(GAPS) + 0.1 * _two_class_ce(-GAPS)).mean(),
    ),
  ],
)
def test_each_shape_is_its_formula_on_a_two_class_batch(shape, by_hand):
  assert float(loss_shapes.shape_loss(shape)(LOGITS, LABELS)) == pytest.approx(by_hand, rel=1e-6)


def test_shapes_are_named_once_and_bad_ones_are_refused_with_the_fix():
  assert loss_shapes.canonical("temperature:2.0") == "temperature:2"
  assert loss_shapes.canonical("poly:-1") == "poly:-1"
  for bad, message in [
    ("hinge:1", "unknown; known: ce, temperature"),
    ("margin", "expected margin:NUMBER"),
    ("ce:1", "ce takes no parameter"),
    ("temperature:0", "temperature must be > 0"),
    ("label_smoothing:1", "must lie in \\[0, 1\\)"),
  ]:
    with pytest.raises(ValueError, match=message):
      loss_shapes.parse_shape(bad)


def test_the_default_rates_are_those_the_suites_ce_sweep_chose():
  path = os.path.join(os.path.dirname(suite.BASELINE_CONFIG), "..", "benchmarks", "results")
  with open(os.path.join(path, "suite", "results.json")) as f:
    tasks = json.load(f)["tasks"]
  assert set(loss_shapes.TASKS) == set(suite.TASKS) - {"mnist1d_cnn"}
  for task, rate in loss_shapes.RATES.items():
    assert rate == suite.best_rate(tasks[task]["ce_sweep"]), task


def test_the_ce_shape_is_the_librarys_ce_run_and_another_shape_is_not():
  from l2t_jax.train import train

  config = config_from_file(suite.BASELINE_CONFIG)
  config.train.steps = 200
  config.train.eval_every = config.train.log_every = 100
  config.train.fast_compile = True
  library = train(config, log=lambda _: None)
  summary, state = loss_shapes.train_shape(config, loss_shapes.shape_loss("ce"))
  assert summary["test_accuracy"] == library.summary["test_accuracy"]
  assert summary["val_accuracy"] == library.summary["val_accuracy"]
  assert summary["train_ce"] == pytest.approx(library.summary["final_train_ce"], rel=1e-5)
  jax.tree_util.tree_map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    state.student.params,
    library.state.student.params,
  )
  # The loss is what changed: the same run on a margin ends elsewhere.
  _, other = loss_shapes.train_shape(config, loss_shapes.shape_loss("margin:1"))
  moved = jax.tree_util.tree_map(
    lambda a, b: float(jnp.abs(a - b).max()), other.student.params, library.state.student.params
  )
  assert max(jax.tree_util.tree_leaves(moved)) > 1e-2


def test_smoke_writes_results_table_and_plot_and_reuses_its_runs(tmp_path, capsys):
  pytest.importorskip("sklearn")
  out = tmp_path / "shapes"
  args = ["--smoke", f"--out={out}", "--tasks=mnist1d_1k,digits", "--rates=digits=0.05"]
  report = loss_shapes.main(args)
  saved = json.loads((out / "results.json").read_text())
  assert saved == json.loads(json.dumps(report))
  assert list(saved["tasks"]) == ["mnist1d_1k", "digits"]
  assert saved["config"]["shapes"] == ["ce", "margin:1"]
  for name, task in saved["tasks"].items():
    assert task["rate"] == (0.05 if name == "digits" else loss_shapes.RATES[name])
    assert task["seeds"] == [0] and list(task["shapes"]) == ["ce", "margin:1"]
    ce = task["shapes"]["ce"]
    for shape, row in task["shapes"].items():
      (test,), (val,) = row["test_accuracy"], row["val_accuracy"]
      assert 0.0 <= test <= 1.0 and 0.0 <= val <= 1.0
      assert row["gain_vs_ce"] == pytest.approx(100 * (test - ce["test_accuracy"][0]))
      assert row["gain_se"] == 0.0 and row["wins_vs_ce"] == int(test > ce["test_accuracy"][0])
      run = out / "runs" / name / shape.replace(":", "_") / "seed0.json"
      config = json.loads(run.read_text())["config"]
      assert config["train"]["steps"] == 4 and config["seed"] == 0
      assert config["optim"]["learning_rate"] == task["rate"]
      assert config["data"]["name"] == ("digits" if name == "digits" else "mnist1d")
  assert saved["summary"]["margin:1"]["mean_gain"] == pytest.approx(
    np.mean([t["shapes"]["margin:1"]["gain_vs_ce"] for t in saved["tasks"].values()])
  )
  table = (out / "table.md").read_text()
  assert "| shape | mnist1d_1k (lr 0.2) | digits (lr 0.05) | mean |" in table
  assert "| margin:1 | " in table and "| ce | " in table
  assert (out / "gain.png").stat().st_size > 0
  assert "| margin:1 | " in capsys.readouterr().out

  loss_shapes.main(args)  # again: every run is found and reused
  lines = [line for line in capsys.readouterr().out.splitlines() if " seed 0 " in line]
  assert len(lines) == 4 and all(line.endswith("(reused)") for line in lines)
