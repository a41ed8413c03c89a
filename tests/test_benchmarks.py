"""The benchmark scripts in their CPU smoke modes: they run, print their tables, write their JSON."""

import json

import pytest

from benchmarks import dln_parts, gpu_throughput, paper_tables, peer_torch, speed
from tests.conftest import small_config


def test_paper_tables_smoke_prints_the_error_table_of_every_method(tmp_path, capsys):
  out = tmp_path / "tables.json"
  report = paper_tables.main(
    ["--smoke", "--configs=mnist_lenet", f"--workdir={tmp_path}", f"--out={out}", "--quiet"]
  )
  text = capsys.readouterr().out
  assert "Test error (%) on MNIST" in text and "LeNet" in text
  for name in ("Cross entropy", "L2T-DLF", "L2T-DLN"):
    assert name in text
  saved = json.loads(out.read_text())
  assert saved["tables"] == report["tables"]
  runs = {r["method"]: r for r in saved["runs"]}
  assert set(runs) == {"ce", "l2t_dlf", "l2t_dln"}
  for r in runs.values():
    assert 0.0 <= r["test_error"] <= 100.0
    assert r["summary"]["student_steps"] == 4
  assert runs["l2t_dln"]["summary"]["teacher_updates"] == 1
  cells = saved["tables"]["mnist"]["rows"]
  assert cells["l2t_dln"]["LeNet"] == [runs["l2t_dln"]["test_error"]]

  # Run again: finished runs are reused, not trained anew.
  paper_tables.main(
    [
      "--smoke",
      "--configs=mnist_lenet",
      "--methods=l2t_dln",
      f"--workdir={tmp_path}",
      f"--out={tmp_path / 'again.json'}",
    ]
  )
  assert "compile" not in capsys.readouterr().out  # no training summary was printed


def test_gpu_throughput_smoke_reports_step_time_and_images_per_second(tmp_path, capsys):
  out = tmp_path / "throughput.json"
  # CE: the script measures every method through the same code; L2T-DLN's cycle is compiled and
  # run in the other tests.
  report = gpu_throughput.main(["--smoke", "--methods=ce", "--set=meta.interval=4", f"--out={out}"])
  assert json.loads(out.read_text()) == json.loads(json.dumps(report))
  (entry,) = report["results"]
  assert entry["method"] == "ce" and entry["depth"] == 8 and entry["finite_loss"]
  assert entry["interval"] == 4 and report["set"] == {"meta.interval": 4}  # the smoke config's: 2
  assert entry["step_ms"] > 0
  assert (
    abs(entry["images_per_second"] - 8 / (entry["step_ms"] / 1e3))
    < 1e-6 * entry["images_per_second"]
  )
  assert "images/s" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    gpu_throughput.main(["--smoke", "--set=meta.intervall=4", f"--out={tmp_path / 'bad.json'}"])
  assert "--set meta.intervall: the config has no key 'intervall'" in capsys.readouterr().err
  assert not (tmp_path / "bad.json").exists()


def test_compare_losses_small_writes_results_plots_and_table(tmp_path, capsys):
  from benchmarks import compare_losses

  out = tmp_path / "cmp"
  compare_losses.main(
    [
      "--seeds=1",
      "--steps=40",
      "--ce_lrs=0.05,0.1",
      f"--out={out}",
      "--set",
      "train.eval_every=20",
      "--set",
      "train.log_every=20",
      "--set",
      "meta.teacher_every=2",
      "--set",
      "data.val_size=200",
      "--set",
      "train.fast_compile=True",
      "--set",
      "meta.val_batch_size=100",
    ]
  )
  text = capsys.readouterr().out
  saved = json.loads((out / "results.json").read_text())
  assert set(saved["methods"]) == set(compare_losses.METHODS)
  assert saved["steps"] == 40 and saved["label_noise"] == 0.0

  def best_rate(sweep):
    return max(saved[sweep], key=lambda lr: saved[sweep][lr]["val_accuracy"])

  best, best_cosine = best_rate("ce_lr_sweep"), best_rate("ce_cosine_lr_sweep")
  assert set(saved["ce_lr_sweep"]) == set(saved["ce_cosine_lr_sweep"]) == {"0.05", "0.1"}
  assert saved["methods"]["ce"]["learning_rate"] == float(best)
  for name in ("ce_trainval", "label_smoothing", "l2t_dlf"):
    assert saved["methods"][name]["learning_rate"] == float(best)
  assert saved["methods"]["ce_cosine"]["learning_rate"] == float(best_cosine)
  # Each row reports its own run (the swept ones: the run at the chosen rate).
  run_dirs = {"ce": f"ce_lr{best}", "ce_cosine": f"ce_cosine_lr{best_cosine}"}
  for name, m in saved["methods"].items():
    run = json.loads(
      (out / "runs" / run_dirs.get(name, name) / "seed0" / "summary.json").read_text()
    )
    assert m["test_accuracy"] == [run["test_accuracy"]]
  assert saved["methods"]["ce_trainval"]["val_accuracy"] == [None]

  def run_config(name):
    return json.loads((out / "runs" / name / "seed0" / "config.json").read_text())

  assert run_config("ce_cosine_lr0.1")["optim"]["schedule"] == "cosine"
  # L2T-DLN takes the validation batch it is given; L2T-DLF's teacher sees the whole split.
  assert run_config("l2t_dln")["meta"]["val_batch_size"] == 100
  assert run_config("l2t_dlf")["meta"]["val_batch_size"] == 0
  assert (out / "teacher_run" / "teacher.msgpack").exists()
  assert run_config("l2t_dln_teacher_init")["teacher_init"] == str(
    out / "teacher_run" / "teacher.msgpack"
  )
  for name in ("curves.png", "learned_loss.png", "table.md"):
    assert (out / name).stat().st_size > 0
  assert (
    "| l2t_dln_teacher_init |" in text
    and "| l2t_dln_teacher_init |" in (out / "table.md").read_text()
  )


def test_seed_statistics_are_the_mean_the_sample_std_and_the_strict_wins_over_ce():
  from benchmarks.compare_losses import seed_statistics

  stats = seed_statistics([0.8, 0.6, 0.7], [0.7, 0.7, 0.7])
  assert abs(stats["mean"] - 0.7) < 1e-12 and abs(stats["std"] - 0.1) < 1e-12
  assert stats["wins_vs_ce"] == 1  # a tie is not a win
  assert seed_statistics([0.5], None) == {"mean": 0.5, "std": 0.0, "wins_vs_ce": None}


def test_speed_writes_every_ratio_and_the_memory_table(tmp_path, capsys, fast_compiles):
  # --quick with the memory table and one asynchronous schedule asked for explicitly: both modes'
  # paths in one run; the reference protocol's row (the longest compile) is left out here. The
  # programs compile fast: the figures are not checked, only that every one is written.
  # Without torch (CI installs .[test] only) the peer rows are left out too.
  report = speed.main(
    [
      f"--out={tmp_path}",
      "--quick",
      "--repeats=1",
      "--steps_per_repeat=20",
      "--ks=10",
      "--remat=sqrt",
      "--intervals=20",
      "--no_reference",
    ]
  )
  saved = json.loads((tmp_path / "speed.json").read_text())
  for key in (
    "ratio_meta_segment_vs_ce",
    "ratio_default_vs_ce",
    "ratio_meta_vs_floor",
    "compile_seconds",
  ):
    assert saved[key] == report[key] and saved[key] > 0
  mlp = saved["students"]["mlp"]
  ours = {"ce", "default", "meta_segment", "meta_segment_floor", "interval_20"}
  assert ours <= set(mlp["us_per_step"])
  assert saved["ratio_meta_vs_floor"] == pytest.approx(
    mlp["us_per_step"]["meta_segment"] / mlp["us_per_step"]["meta_segment_floor"]
  )
  assert "reference_meta" not in mlp["us_per_step"]
  if peer_torch.unavailable():
    assert set(mlp["us_per_step"]) == ours and saved["ratio_peer_meta_vs_ours"] is None
  else:
    assert saved["ratio_peer_meta_vs_ours"] > 0
  assert mlp["ratio_interval_vs_ce"]["20"] > 0
  assert [(r["K"], r["remat"]) for r in mlp["memory_vs_K"]] == [(10, "sqrt")]
  assert mlp["memory_vs_K"][0]["peak_bytes"] > 0
  assert (tmp_path / "speed.png").exists()
  out = capsys.readouterr().out
  assert "meta-segment / CE" in out and "meta-segment / floor" in out


def test_a_finished_run_is_reused_only_for_its_own_config_and_options_added_after_it(tmp_path):
  from benchmarks.common import finished_summary
  from l2t_jax.config import default_config

  config = small_config()
  ran = json.loads(config.to_json())
  del ran["student"]["dropout"]  # an option added after the run, kept at its default here
  (tmp_path / "config.json").write_text(json.dumps(ran))
  (tmp_path / "summary.json").write_text(json.dumps({"test_accuracy": 0.5}))
  assert finished_summary(str(tmp_path), config) == {"test_accuracy": 0.5}
  assert default_config().student.dropout == config.student.dropout == 0.0
  config.student.dropout = 0.5  # the run had no dropout: not the same run
  assert finished_summary(str(tmp_path), config) is None
  config.student.dropout = 0.0
  config.optim.learning_rate = 0.3  # a setting the run did have, changed
  assert finished_summary(str(tmp_path), config) is None
  assert finished_summary(str(tmp_path / "missing"), small_config()) is None


def test_dln_parts_times_each_part_of_the_dln_against_the_floors_part(
  tmp_path, capsys, fast_compiles
):
  report = dln_parts.main([f"--out={tmp_path}", "--repeats=1", "--calls=1", "--segments=5"])
  assert json.loads((tmp_path / "dln_parts.json").read_text()) == report
  parts = report["parts"]
  assert set(parts) == set(dln_parts.PARTS)
  assert all(parts[p]["ours"]["min_us"] > 0 for p in dln_parts.PARTS)
  assert parts["table"]["floor"]["min_us"] == 0.0  # one weight on CE has no table
  assert parts["loss"]["floor"]["min_us"] > 0 and parts["teacher"]["floor"]["min_us"] > 0
  assert report["dln_coordinates"] > 1 and report["unroll_steps"] > 1
  assert report["excess_min_us"] == pytest.approx(sum(p["excess_min_us"] for p in parts.values()))
  assert "| all three |" in capsys.readouterr().out
