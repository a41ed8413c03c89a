"""Shared helpers for the test suite (CPU only)."""

import atexit
import functools
import os
import shutil
import sys
import tempfile

import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/, benchmarks/ and examples/ are importable in tests

# One persistent XLA compilation cache and one MNIST-1D generation cache (l2t_jax/data/mnist1d.py)
# for the session, in temporary folders (not the user's ~/.cache), shared with the tests'
# subprocesses (they inherit the environment): a program compiled again, or a dataset generated
# again, by another process or another run is loaded instead. Every program is kept, not only those
# that took a second to compile: most of the suite's compilations are small ones, repeated in each
# worker. Set before any test imports jax.
for _env, _prefix in (
  ("JAX_COMPILATION_CACHE_DIR", "l2t_jax_test_xla_cache_"),
  ("L2T_JAX_CACHE_DIR", "l2t_jax_test_data_cache_"),
):
  if _env not in os.environ:
    os.environ[_env] = tempfile.mkdtemp(prefix=_prefix)
    atexit.register(shutil.rmtree, os.environ[_env], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def small_config(method: str = "l2t_dln", steps: int = 200) -> ml_collections.ConfigDict:
  """The default experiment, shortened for tests (compiled fast: a short run never repays XLA's
  optimisations)."""
  from configs import mnist1d_mlp

  config = mnist1d_mlp.get_config()
  config.method = method
  config.train.steps = steps
  config.train.eval_every = 100
  config.train.log_every = 100
  config.train.fast_compile = True
  return config


def _with_fast_options(jit, fun=None, **kwargs):
  """`jit(fun, **kwargs)` with `l2t_jax.parallel.FAST_COMPILER_OPTIONS` under any options given."""
  from l2t_jax.parallel import FAST_COMPILER_OPTIONS

  if fun is None:
    return functools.partial(_with_fast_options, jit, **kwargs)
  kwargs["compiler_options"] = {**FAST_COMPILER_OPTIONS, **(kwargs.get("compiler_options") or {})}
  return jit(fun, **kwargs)


def fast_jit(fun=None, **kwargs):
  """`jax.jit` at XLA's lowest backend optimisation (`l2t_jax.parallel.FAST_COMPILER_OPTIONS`): a
  test's program runs a few times, so compiling it is most of its cost."""
  import jax

  return _with_fast_options(jax.jit, fun, **kwargs)


@pytest.fixture
def fast_compiles(monkeypatch):
  """Every `jax.jit` made during the test (the library's and an example's included) compiles at
  XLA's lowest backend optimisation, as `fast_jit` does: for tests that run a whole loop of their
  own for a few steps."""
  import jax

  monkeypatch.setattr(jax, "jit", functools.partial(_with_fast_options, jax.jit))


def dln_of(learn_scale: bool = False):
  """The default config's DLN, with or without its learned scale."""
  from l2t_jax.config import default_config
  from l2t_jax.dln import make_dln

  cfg = default_config().dln
  cfg.learn_scale = learn_scale
  return make_dln(cfg)


def dln_phi(learn_scale: bool = False, seed: int = 0, moved_by: float = 0.0):
  """`dln_of(learn_scale)`'s parameters initialised with `seed`, moved by `moved_by` times Gaussian
  noise drawn with `seed + 1` (0: left at initialisation exactly); one jitted program per
  `learn_scale`."""
  return _jitted_dln_phi()(learn_scale, seed, moved_by)  # every argument given: one compilation


@functools.cache
def _jitted_dln_phi():
  import jax  # here, not at the top: the caches above are set before jax is imported
  from jax.flatten_util import ravel_pytree

  def phi(learn_scale, seed, moved_by):
    flat, unravel = ravel_pytree(dln_of(learn_scale).init(jax.random.PRNGKey(seed)))
    return unravel(flat + moved_by * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))

  return fast_jit(phi, static_argnums=0)


@pytest.fixture
def root():
  return ROOT
