"""The shape of the code, enforced by tools: ruff's lint and format check, and the import
contracts in setup.cfg (lint-imports). Each names the command that fixes or explains a failure."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name: str) -> str:
  path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
  if path is None:
    pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
  return path


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_passes():
  out = _run(_tool("ruff"), "check", ".")
  assert out.returncode == 0, f"ruff check . found problems:\n{out.stdout[-4000:]}"


def test_ruff_format_is_kept():
  out = _run(_tool("ruff"), "format", "--check", ".")
  assert out.returncode == 0, f"run `ruff format .`; these files differ:\n{out.stdout[-4000:]}"


def test_import_contracts_are_kept():
  out = _run(_tool("lint-imports"), "--no-cache")
  assert out.returncode == 0, (
    f"lint-imports: a contract of setup.cfg is broken:\n{out.stdout[-4000:]}"
  )
