"""Shared helpers for the test suite (CPU only)."""

import atexit
import os
import shutil
import sys
import tempfile

import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/, benchmarks/ and examples/ are importable in tests

# One persistent XLA compilation cache for the session, shared with the tests' subprocesses
# (they inherit the environment): a program compiled again, by another process or another run
# of the same config, is loaded instead. Set before any test imports jax.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="l2t_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
# Likewise one MNIST-1D generation cache (l2t_jax/data/mnist1d.py), not the user's ~/.cache.
if "L2T_JAX_CACHE_DIR" not in os.environ:
  _data_cache = tempfile.mkdtemp(prefix="l2t_jax_test_data_cache_")
  os.environ["L2T_JAX_CACHE_DIR"] = _data_cache
  atexit.register(shutil.rmtree, _data_cache, ignore_errors=True)


def small_config(method: str = "l2t_dln", steps: int = 200) -> ml_collections.ConfigDict:
  """The default experiment, shortened for tests."""
  from configs import mnist1d_mlp

  config = mnist1d_mlp.get_config()
  config.method = method
  config.train.steps = steps
  config.train.eval_every = 100
  config.train.log_every = 100
  return config


@pytest.fixture
def root():
  return ROOT
