"""Shared helpers for the test suite (CPU only)."""

import os
import sys

import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/ and examples/ are importable in tests


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
