"""The Dynamic Loss Network: a loss that is a small network on the 1-vs-1 transformation.

Every (sample, class) pair becomes a binary item with features of `(p_c, y_c)`; one MLP shared by
all items scores each, and the loss is the mean over samples of the sum over classes. The item value
is `skip * (-y_c log p_c) + mlp(features)` with the MLP's output layer initialised at zero, so that
at initialisation the DLN *is* cross-entropy (values and gradients) for any number of classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

Params = Any

# log(1 - p) is computed from log p capped just below 0 so that p -> 1 stays finite.
LOG_P_CAP = -1e-6


def item_features(log_p: jax.Array, y: jax.Array, names: Sequence[str], log_clip: float) -> jax.Array:
  """Per-item features, shape `log_p.shape + (len(names),)`; log terms clipped at -log_clip."""
  clipped = jnp.clip(log_p, -log_clip, 0.0)
  log_1mp = jnp.clip(jnp.log1p(-jnp.exp(jnp.minimum(log_p, LOG_P_CAP))), -log_clip, 0.0)
  table = {
      "log_p": lambda: clipped,
      "p": lambda: jnp.exp(log_p),
      "y": lambda: y,
      "y_log_p": lambda: y * clipped,
      "log_1mp": lambda: log_1mp,
  }
  unknown = [n for n in names if n not in table]
  if unknown:
    raise ValueError(f"unknown DLN item features {unknown}; known: {sorted(table)}")
  return jnp.stack([table[n]() for n in names], axis=-1)


class ItemNetwork(nn.Module):
  """Scores every item; output layer at zero so that only the cross-entropy skip path acts at init."""
  features: Sequence[str]
  hidden: Sequence[int]
  skip_init: float
  log_clip: float
  learn_scale: bool = False  # a log-scale of the whole loss, learnable: the loss's own step size

  @nn.compact
  def __call__(self, log_p: jax.Array, y: jax.Array) -> jax.Array:
    skip = self.param("skip", nn.initializers.constant(self.skip_init), ())
    h = item_features(log_p, y, self.features, self.log_clip)
    for width in self.hidden:
      h = jnp.tanh(nn.Dense(width)(h))
    residual = nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)
    value = skip * (-y * log_p) + residual[..., 0]
    if self.learn_scale:
      value = jnp.exp(self.param("log_scale", nn.initializers.zeros, ())) * value
    return value


@dataclasses.dataclass(frozen=True)
class DLN:
  """Pure functions of the DLN parameters `phi` (a pytree): `init`, `loss`, `item_values`."""
  network: ItemNetwork

  def init(self, rng: jax.Array) -> Params:
    dummy = jnp.zeros((1, 2))
    return self.network.init(rng, dummy, dummy)["params"]

  def item_values(self, phi: Params, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The DLN's value for every (sample, class) item, shape `logits.shape`."""
    if labels.shape != logits.shape[:-1]:
      raise ValueError(f"labels shaped {labels.shape} do not fit logits shaped {logits.shape}: "
                       "expected integer labels with the logits' leading shape")
    y = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return self.network.apply({"params": phi}, jax.nn.log_softmax(logits), y)

  def loss(self, phi: Params, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean over samples of the sum over classes of the item values."""
    values = self.item_values(phi, logits, labels)
    return values.sum(-1).mean()

  def item_loss(self, phi: Params, p: jax.Array, y: jax.Array) -> jax.Array:
    """The DLN's value for binary items given the probability `p` and target `y` directly."""
    log_p = jnp.log(jnp.clip(p, jnp.finfo(p.dtype).tiny, 1.0))
    return self.network.apply({"params": phi}, log_p, y)


def make_dln(cfg: ml_collections.ConfigDict) -> DLN:
  return DLN(ItemNetwork(features=tuple(cfg.features), hidden=tuple(cfg.hidden),
                         skip_init=float(cfg.skip_init), log_clip=float(cfg.log_clip),
                         learn_scale=bool(cfg.learn_scale)))
