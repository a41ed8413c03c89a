"""Fixed losses on logits and integer labels: training losses and validation objectives.

Each returns the mean over samples, so that it can stand wherever a DLN loss stands.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from l2t_jax.config import VAL_OBJECTIVES


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def label_smoothing(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def focal(logits: jax.Array, labels: jax.Array, gamma: float) -> jax.Array:
  """Focal loss (Lin et al. 2017): cross-entropy weighted by (1 - p_y)^gamma."""
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
  return (-((1.0 - jnp.exp(log_p)) ** gamma) * log_p).mean()


def smooth_error(logits: jax.Array, labels: jax.Array, k: float) -> jax.Array:
  """The differentiable error of L2T-DLF: 2 sigmoid(k (max_c p_c - p_y)) - 1, in [0, 1)."""
  p = jax.nn.softmax(logits)
  p_y = jnp.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
  return (2.0 * jax.nn.sigmoid(k * (p.max(-1) - p_y)) - 1.0).mean()


def scale_free_ce(logits: jax.Array, labels: jax.Array, temperature: float) -> jax.Array:
  """Cross-entropy of the logits standardised per sample, divided by `temperature`.

  Blind to the scale of the logits (a confidence change that keeps the ranking leaves it
  unchanged), so a teacher that minimises it cannot win by making the student less confident.
  """
  z = logits - logits.mean(-1, keepdims=True)
  z = z / jnp.sqrt((z * z).mean(-1, keepdims=True) + 1e-6)
  return cross_entropy(z / temperature, labels)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return (logits.argmax(-1) == labels).mean()


def validation_objective(name: str, smooth_error_k: float, scale_free_temperature: float):
  """`(logits, labels) -> scalar`: what the teacher minimises on validation data."""
  if name == "ce":
    return cross_entropy
  if name == "smooth_error":
    return lambda logits, labels: smooth_error(logits, labels, smooth_error_k)
  if name == "scale_free_ce":
    return lambda logits, labels: scale_free_ce(logits, labels, scale_free_temperature)
  raise ValueError(f"meta.val_objective='{name}' is not one of {VAL_OBJECTIVES}")
