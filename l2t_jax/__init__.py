"""l2t_jax: Learning to Teach with a Dynamic Loss Network (L2T-DLN), in JAX.

The public API (stable within a minor version, see the README's "Python API"): the driver `train`,
the config schema, the student interface, the DLN and the loss the student trains on, the teacher
and the teaching component, and the differentiable segment. Everything else may change.
"""

from l2t_jax.build import build_method, make_student_loss, make_teacher, make_teaching
from l2t_jax.config import ConfigError, default_config, validate
from l2t_jax.dln import DLN, make_dln
from l2t_jax.student_loss import FunctionLoss, StudentLoss
from l2t_jax.students import Student, from_linen, from_nnx
from l2t_jax.teacher import LSTMTeacher, preprocess_gradient
from l2t_jax.teaching import Teaching, TeachingInfo, TeachingState, student_features
from l2t_jax.unroll import (
  Hypergradient,
  StudentState,
  UnrollOptions,
  hypergradient,
  init_student_state,
  student_step,
  unroll,
)

__version__ = "0.2.0"

__all__ = [
  "train",
  "ConfigError",
  "default_config",
  "validate",
  "build_method",
  "make_student_loss",
  "make_teacher",
  "make_teaching",
  "DLN",
  "make_dln",
  "StudentLoss",
  "FunctionLoss",
  "Student",
  "from_linen",
  "from_nnx",
  "LSTMTeacher",
  "preprocess_gradient",
  "Teaching",
  "TeachingState",
  "TeachingInfo",
  "student_features",
  "Hypergradient",
  "StudentState",
  "UnrollOptions",
  "hypergradient",
  "init_student_state",
  "student_step",
  "unroll",
]


def __getattr__(name):  # the driver (and its checkpointing) loads only when asked for
  if name == "train":
    from l2t_jax.train import train

    return train
  raise AttributeError(f"module 'l2t_jax' has no attribute {name!r}")
