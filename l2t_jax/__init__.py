"""l2t_jax: Learning to Teach with a Dynamic Loss Network (L2T-DLN), in JAX."""

from l2t_jax.config import ConfigError, default_config, validate
from l2t_jax.dln import DLN, make_dln
from l2t_jax.teacher import LSTMTeacher, preprocess_gradient
from l2t_jax.unroll import StudentState, hypergradient, student_step, unroll

__version__ = "0.1.0"

__all__ = ["ConfigError", "default_config", "validate", "DLN", "make_dln", "LSTMTeacher",
           "preprocess_gradient", "StudentState", "hypergradient", "student_step", "unroll"]
