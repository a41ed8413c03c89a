"""Fixed losses on logits and integer labels: training losses and validation objectives.

Each returns the mean over samples, so that it can stand wherever a DLN loss stands.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

VAL_OBJECTIVES = (
  "ce",
  "smooth_error",
  "scale_free_ce",
  "calibrated_ce",
)  # see validation_objective


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def label_smoothing(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def focal(logits: jax.Array, labels: jax.Array, gamma: float) -> jax.Array:
  """Focal loss (Lin et al. 2017): cross-entropy weighted by (1 - p_y)^gamma."""
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
  return (-((1.0 - jnp.exp(log_p)) ** gamma) * log_p).mean()


def generalized_ce(logits: jax.Array, labels: jax.Array, q: float) -> jax.Array:
  """Generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q) / q, between cross-entropy
  (q -> 0) and the mean absolute error (q = 1), which a wrong label pulls on less."""
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
  return ((1.0 - jnp.exp(q * log_p)) / q).mean()


def symmetric_ce(
  logits: jax.Array, labels: jax.Array, alpha: float, beta: float, log_zero: float = -4.0
) -> jax.Array:
  """Symmetric cross-entropy (Wang et al. 2019): alpha CE + beta reverse CE, the reverse term
  -sum_c p_c log q_c with the one-hot label's log 0 clipped to `log_zero` (their A = -4), which is
  -log_zero (1 - p_y)."""
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
  return (-alpha * log_p - beta * log_zero * (1.0 - jnp.exp(log_p))).mean()


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


def calibration_scale(
  logits: jax.Array, labels: jax.Array, steps: int, axis_name: str | None = None
) -> jax.Array:
  """The inverse temperature `b` that minimises the cross-entropy of `b * logits` on this batch
  (Newton's method on a convex function of `b`, from `b = 1`); no gradient flows through it.
  With `axis_name` (data-parallel), the batch is the union of every device's slice."""
  z = jax.lax.stop_gradient(logits)
  z_y = jnp.take_along_axis(z, labels[..., None], axis=-1)[..., 0]

  def newton(b, _):
    p = jax.nn.softmax(b * z)
    mean_z = (p * z).sum(-1)
    slope = (mean_z - z_y).mean()
    curvature = ((p * z * z).sum(-1) - mean_z**2).mean()
    if axis_name:
      slope, curvature = jax.lax.pmean((slope, curvature), axis_name)
    step = slope / jnp.maximum(curvature, 1e-12)
    return jnp.clip(b - step, 0.5 * b, 2.0 * b), None  # at most halve or double per step

  b, _ = jax.lax.scan(newton, jnp.ones((), z.dtype), None, length=steps)
  return b


def calibrated_ce(
  logits: jax.Array, labels: jax.Array, steps: int = 10, axis_name: str | None = None
) -> jax.Array:
  """Cross-entropy after temperature scaling fitted on the same batch (`calibration_scale`).

  A teacher that minimises it cannot gain by making the student globally less (or more)
  confident: any such change is undone by the fitted temperature. What is left is how well the
  student ranks the true class, example by example; plain validation CE instead rewards stopping
  the student early once it is overconfident, long before its accuracy stops rising.
  """
  return cross_entropy(calibration_scale(logits, labels, steps, axis_name) * logits, labels)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return (logits.argmax(-1) == labels).mean()


def validation_objective(
  name: str, smooth_error_k: float, scale_free_temperature: float, axis_name: str | None = None
):
  """`(logits, labels) -> scalar`: what the teacher minimises on validation data (`axis_name`: the
  device axis of a data-parallel run, for objectives that are not a plain mean over examples)."""
  if name == "ce":
    return cross_entropy
  if name == "smooth_error":
    return lambda logits, labels: smooth_error(logits, labels, smooth_error_k)
  if name == "calibrated_ce":
    return lambda logits, labels: calibrated_ce(logits, labels, axis_name=axis_name)
  if name == "scale_free_ce":
    return lambda logits, labels: scale_free_ce(logits, labels, scale_free_temperature)
  raise ValueError(f"meta.val_objective='{name}' is not one of {VAL_OBJECTIVES}")
