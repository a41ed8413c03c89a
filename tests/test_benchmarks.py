"""The benchmark scripts in their CPU smoke modes: they run, print their tables, write their JSON."""

import json

from benchmarks import gpu_throughput, paper_tables


def test_paper_tables_smoke_prints_the_error_table_of_every_method(tmp_path, capsys):
  out = tmp_path / "tables.json"
  report = paper_tables.main(["--smoke", "--configs=mnist_lenet", f"--workdir={tmp_path}",
                              f"--out={out}", "--quiet"])
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
  paper_tables.main(["--smoke", "--configs=mnist_lenet", "--methods=l2t_dln",
                     f"--workdir={tmp_path}", f"--out={tmp_path / 'again.json'}"])
  assert "compile" not in capsys.readouterr().out  # no training summary was printed


def test_gpu_throughput_smoke_reports_step_time_and_images_per_second(tmp_path, capsys):
  out = tmp_path / "throughput.json"
  # CE: the script measures every method through the same code; L2T-DLN's cycle is compiled and
  # run in the other tests.
  report = gpu_throughput.main(["--smoke", "--methods=ce", f"--out={out}"])
  assert json.loads(out.read_text()) == json.loads(json.dumps(report))
  (entry,) = report["results"]
  assert entry["method"] == "ce" and entry["depth"] == 8 and entry["finite_loss"]
  assert entry["step_ms"] > 0
  assert abs(entry["images_per_second"] - 8 / (entry["step_ms"] / 1e3)) < 1e-6 * entry[
      "images_per_second"]
  assert "images/s" in capsys.readouterr().out
