"""The README stays true: its Python API snippet runs and teaches, it stays short, the files and
config keys it names exist, and its results table is the one in benchmarks/results/fmnist."""

from __future__ import annotations

import json
import os
import random
import re

import jax
import numpy as np
import optax

from benchmarks import suite
from l2t_jax import default_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
SNIPPET_MARK = "<!-- readme-snippet: python-api"  # the comment right above the snippet's code block
MAX_CHARS = 15_000  # a newcomer reads it in five minutes (issue 13)
FILE_EXTENSIONS = ("msgpack", "json", "jsonl", "py", "md", "png")
# The results table's columns after the task's: the methods of the real-image tasks, in the suite's
# order (the control and the authors' protocol are not run on them).
TABLE_METHODS = tuple(m for m in suite.METHODS if m not in ("l2t_dln_frozen", "l2t_dln_reference"))


def read_readme() -> str:
  with open(README, encoding="utf-8") as f:
    return f.read()


def python_api_snippet(text: str) -> str:
  """The code block right after the snippet's marker comment; the marker must be there once."""
  assert text.count(SNIPPET_MARK) == 1, f"README.md must hold '{SNIPPET_MARK} ...' exactly once"
  after = text[text.index(SNIPPET_MARK) :].split("\n", 1)[1]
  match = re.match(r"```python\n(.*?)\n```", after, re.S)
  assert match, "the marker comment must be followed directly by a ```python block"
  return match.group(1)


def tree_distance(a, b) -> float:
  """The largest absolute difference between two pytrees of the same structure."""
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
  )


def test_python_api_snippet_runs_and_teaches():
  code = python_api_snippet(read_readme())
  namespace = {"__name__": "readme_snippet"}
  np_state, py_state = np.random.get_state(), random.getstate()  # MNIST-1D's generator seeds both
  try:
    exec(compile(code, "README.md (Python API snippet)", "exec"), namespace)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  phi, phi0, taught = namespace["phi"], namespace["phi0"], namespace["taught"]
  assert tree_distance(phi, phi0) > 1e-6, "the DLN did not move"
  # the teacher learned: its optimizer took steps, and it is no longer the one it started as
  assert int(optax.tree_utils.tree_get(taught.opt_state, "count")) >= 1
  start = namespace["teaching"].init(namespace["rng"], phi0)
  assert tree_distance(taught.teacher_params, start.teacher_params) > 1e-6
  for leaf in jax.tree_util.tree_leaves((phi, namespace["s"].params)):
    assert np.all(np.isfinite(leaf))
  assert 0.1 < float(namespace["acc"]) <= 1.0  # above chance: the student learned


def test_readme_is_short():
  length = len(read_readme())
  assert length < MAX_CHARS, f"README.md has {length} characters; keep it under {MAX_CHARS}"


def test_paths_the_readme_names_exist():
  text = read_readme()
  configs = set(re.findall(r"configs/[\w./]+?\.py", text))
  scripts = set(re.findall(r"benchmarks/[\w./]+?\.py", text))
  assert "configs/mnist1d_mlp.py" in configs and "benchmarks/paper_tables.py" in scripts
  missing = sorted(p for p in configs | scripts if not os.path.isfile(os.path.join(ROOT, p)))
  assert not missing, f"README.md names files that do not exist: {missing}"


def test_config_keys_the_readme_names_exist():
  text = read_readme()
  keys = set(re.findall(r"--config\.([a-z_][\w.]*)=", text))  # not the placeholder KEY
  sections = "|".join(k for k, v in default_config().items() if hasattr(v, "keys"))
  keys |= {
    key
    for key in re.findall(rf"`((?:{sections})\.\w+)[=`]", text)
    if key.rsplit(".", 1)[1] not in FILE_EXTENSIONS
  }  # `teacher.msgpack` is a file
  assert {"method", "dln.item_kind", "data.split"} <= keys  # the patterns still find them
  config = default_config()
  unknown = []
  for key in sorted(keys):
    node = config
    for part in key.split("."):
      if not hasattr(node, "keys") or part not in node:
        unknown.append(key)
        break
      node = node[part]
  assert not unknown, f"README.md names config keys default_config() does not have: {unknown}"


def _cells(line: str) -> list[str]:
  return [c.strip().strip("*") for c in line.strip().strip("|").split("|")]


def test_results_table_matches_the_suite_results():
  """The README's real-image table is benchmarks/results/fmnist/results.json, cell by cell."""
  with open(os.path.join(ROOT, "benchmarks", "results", "fmnist", "results.json")) as f:
    results = json.load(f)
  lines = read_readme().splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("| task | CE (rate)")) + 2
  rows = []
  for line in lines[start:]:
    if not line.startswith("|"):
      break
    rows.append(_cells(line))
  tasks = {r[0]: r[1:] for r in rows if r[0] != "wall time / CE's"}
  assert set(tasks) == set(results["tasks"])
  for task, cells in tasks.items():
    entry = results["tasks"][task]
    ce = entry["methods"]["ce"]
    assert cells[0] == f"{100 * ce['mean']:.2f} ({ce['learning_rate']:g})", task
    for method, cell in zip(TABLE_METHODS[1:], cells[1:], strict=True):
      if method not in entry["methods"]:
        assert cell == "not run", (task, method)
        continue
      r = entry["methods"][method]
      assert cell == (
        f"{100 * r['mean']:.2f} ({r['gain_vs_ce']:+.2f} +- {r['gain_se']:.2f}, "
        f"{r['wins_vs_ce']}/{len(r['test_accuracy'])})"
      ), (task, method)
  costs = next(r for r in rows if r[0] == "wall time / CE's")[1:]
  for method, cell in zip(TABLE_METHODS, costs, strict=True):
    ratios = [
      t["methods"][method]["cost_vs_ce"]
      for t in results["tasks"].values()
      if method in t["methods"]
    ]
    assert cell == f"{np.mean(ratios):.2f}", method
