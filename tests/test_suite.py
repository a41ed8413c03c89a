"""benchmarks/suite.py in its smoke mode: every method on a few tasks, the files it writes, and
the runs it reuses."""

import json
import os

import pytest

from benchmarks import suite

TASKS = ("mnist1d_gen0", "mnist1d_gen1", "digits")  # the two generations share their programs


def test_suite_smoke_writes_results_table_and_plots(tmp_path, capsys):
  pytest.importorskip("sklearn")
  methods = [m for m in suite.METHODS
             if m != "l2t_dln_reference" or os.path.exists(suite.REFERENCE_CONFIG)]
  out = tmp_path / "suite"
  args = ["--smoke", f"--out={out}", f"--tasks={','.join(TASKS)}", f"--methods={','.join(methods)}"]
  report = suite.main(args + ["--jobs=2"])
  saved = json.loads((out / "results.json").read_text())
  assert saved == json.loads(json.dumps(report))
  assert list(saved["tasks"]) == list(TASKS)
  for name, task in saved["tasks"].items():
    assert list(task["methods"]) == methods and task["seeds"] == [0]
    for method, m in task["methods"].items():
      (acc,) = m["test_accuracy"]
      assert 0.0 <= acc <= 1.0 and m["seeds"] == [0] and len(m["val_accuracy"]) == 1
      assert m["gain_vs_ce"] == pytest.approx(100 * (acc - task["methods"]["ce"]["mean"]))
      config = json.loads((out / m["runs"] / "seed0" / "config.json").read_text())
      assert config["train"]["steps"] == 4 and config["seed"] == 0
      assert config["optim"]["learning_rate"] == m["learning_rate"]
    sweep = task["ce_sweep"]
    assert set(sweep) == {"0.05", "0.1"} and set(task["ce_cosine_sweep"]) == set(sweep)
    best = max(sweep, key=lambda lr: sweep[lr]["val_accuracy"])
    for method in ("ce", "label_smoothing", "l2t_dlf"):
      assert task["methods"][method]["learning_rate"] == float(best)
    assert (out / f"learned_loss_{name}.png").stat().st_size > 0
  runs = out / "runs" / "digits"
  digits = json.loads((runs / "l2t_dln" / "seed0" / "config.json").read_text())["data"]
  assert digits["name"] == "digits"
  assert json.loads((runs / "l2t_dlf" / "seed0" / "config.json").read_text())["meta"][
      "val_batch_size"] == 0
  cosine = json.loads((runs / "ce_cosine_lr0.1" / "seed0" / "config.json").read_text())
  assert cosine["method"] == "ce" and cosine["optim"]["schedule"] == "cosine"
  for method in methods[1:]:
    summary = saved["summary"][method]
    assert summary["tasks"] == len(TASKS) and summary["worst_task"] in TASKS
  assert (out / "gain.png").stat().st_size > 0
  table = (out / "table.md").read_text()
  assert "| digits (1 seed) |" in table and "| mean gain over tasks |" in table
  assert "l2t_dln: mean gain over tasks" in capsys.readouterr().out

  # Again, with l2t_dln's settings changed: only l2t_dln trains anew.
  suite.main(args + ["--set", "teacher.learning_rate=0.01"])
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
  trained = [line.split()[1] for line in lines if "reused" not in line]
  assert sorted(trained) == sorted(f"{task}/l2t_dln" for task in TASKS)


def test_suite_refuses_a_missing_reference_config_before_training(tmp_path, capsys):
  with pytest.raises(SystemExit):
    suite.main(["--smoke", f"--out={tmp_path}", "--tasks=digits", "--methods=l2t_dln_reference",
                f"--reference_config={tmp_path / 'missing.py'}"])
  assert "l2t_dln_reference: its config" in capsys.readouterr().err
  assert not (tmp_path / "runs").exists()
