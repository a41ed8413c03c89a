"""The Dynamic Loss Network: a loss that is a small network scoring the items of the output.

Items (`dln.item_kind`), the 1-vs-1 transformation in two readings:
- `one_vs_rest` (ours): every (sample, class) pair is a binary item with features of `(p_c, y_c)`,
  `p` the softmax; the loss is the mean over samples of the sum over classes. The DLN therefore
  does not depend on the number of classes, and a one-variable item can be tabulated (dln_table).
- `one_vs_one` (the authors' code): per sample, for every *wrong* class c the item
  `(sigmoid(z_y), sigmoid(z_c), 1, 0)` (the true class's and class c's sigmoid scores and the
  pair's labels); the true class's own item is all zeros. The loss is the mean over all
  `samples x classes` items, the zero items included, as theirs is.

Networks (`dln.network`):
- `ce_residual` (ours, one_vs_rest items only): `skip * (-y_c log p_c) + mlp(features)` with the
  MLP's output layer initialised at zero, so that at initialisation the DLN *is* cross-entropy
  (values and gradients) for any number of classes.
- `free` (the authors'): a bias-free MLP, every layer (the output layer included) He-normal with
  fan-out scaling, no cross-entropy path: at initialisation the student trains on a random loss.
  Bias-free, it gives 0 on an all-zero item (the true class's one_vs_one item).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

Params = Any

DLN_FEATURES = ("log_p", "y", "y_log_p", "log_1mp", "p")  # what a one_vs_rest item network sees
DLN_ITEMS = ("one_vs_rest", "one_vs_one")  # one_vs_one is the authors' (sigmoid pairs)
DLN_NETWORKS = ("ce_residual", "free")  # free is the authors' (bias-free MLP)
DLN_ACTIVATIONS = ("tanh", "leaky_relu")

# log(1 - p) is computed from log p capped just below 0 so that p -> 1 stays finite.
LOG_P_CAP = -1e-6
LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU's default, the authors' DLN activation
PAIR_FEATURES = 4  # a one_vs_one item: (sigmoid(z_y), sigmoid(z_c), 1, 0)
ACTIVATIONS = {"tanh": jnp.tanh, "leaky_relu": lambda x: jax.nn.leaky_relu(x, LEAKY_RELU_SLOPE)}


def he_normal_fan_out() -> nn.initializers.Initializer:
  """N(0, 2 / fan_out), untruncated: torch's kaiming_normal_(mode='fan_out'), as the authors'."""
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def pair_items(logits: jax.Array, y: jax.Array) -> jax.Array:
  """The one_vs_one items, shape `logits.shape + (4,)`: `(sigmoid(z_y), sigmoid(z_c), 1, 0)` for
  every class c other than the target of the one-hot `y`, all zeros for the target itself."""
  s = jax.nn.sigmoid(logits)
  wrong = 1.0 - y
  s_true = (s * y).sum(-1, keepdims=True)
  return jnp.stack([s_true * wrong, s * wrong, wrong, jnp.zeros_like(s)], axis=-1)


def _learned_scale(module: nn.Module, value: jax.Array) -> jax.Array:
  """`value` times a learnable scale of the whole loss (its log starts at 0: scale 1)."""
  return jnp.exp(module.param("log_scale", nn.initializers.zeros, ())) * value


def item_features(
  log_p: jax.Array, y: jax.Array, names: Sequence[str], log_clip: float
) -> jax.Array:
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
  activation: str = "tanh"  # of the hidden layers: a key of ACTIVATIONS

  @nn.compact
  def __call__(self, log_p: jax.Array, y: jax.Array) -> jax.Array:
    skip = self.param("skip", nn.initializers.constant(self.skip_init), ())
    h = item_features(log_p, y, self.features, self.log_clip)
    for width in self.hidden:
      h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
    residual = nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)
    value = skip * (-y * log_p) + residual[..., 0]
    return _learned_scale(self, value) if self.learn_scale else value


class FreeNetwork(nn.Module):
  """A bias-free MLP scoring item feature vectors (`score`), He-normal (fan-out) in every layer,
  with no cross-entropy path. Called on `(log_p, y)` it scores one_vs_rest items through their
  `features`, like ItemNetwork; `score` takes one_vs_one items directly."""

  hidden: Sequence[int]
  activation: str = "leaky_relu"  # a key of ACTIVATIONS
  features: Sequence[str] = ()  # one_vs_rest items: the features of (log p_c, y_c)
  log_clip: float = 20.0
  learn_scale: bool = False

  def __call__(self, log_p: jax.Array, y: jax.Array) -> jax.Array:
    return self.score(item_features(log_p, y, self.features, self.log_clip))

  @nn.compact
  def score(self, items: jax.Array) -> jax.Array:
    """The value of every item, shape `items.shape[:-1]`."""
    h = items
    for width in self.hidden:
      h = ACTIVATIONS[self.activation](
        nn.Dense(width, use_bias=False, kernel_init=he_normal_fan_out())(h)
      )
    value = nn.Dense(1, use_bias=False, kernel_init=he_normal_fan_out())(h)[..., 0]
    return _learned_scale(self, value) if self.learn_scale else value


@dataclasses.dataclass(frozen=True)
class DLN:
  """Pure functions of the DLN parameters `phi` (a pytree): `init`, `loss`, `item_values`.

  `network` scores the items of kind `item_kind` (module docstring): one_vs_rest items with an
  ItemNetwork or a FreeNetwork, one_vs_one items with a FreeNetwork."""

  network: nn.Module
  item_kind: str = "one_vs_rest"

  def __post_init__(self):
    if self.item_kind not in DLN_ITEMS:
      raise ValueError(f"dln.item_kind='{self.item_kind}' is not one of {DLN_ITEMS}")
    if self.item_kind == "one_vs_one" and not isinstance(self.network, FreeNetwork):
      raise ValueError(
        "one_vs_one items are scored by a FreeNetwork (dln.network='free'), not "
        f"by a {type(self.network).__name__}"
      )

  @property
  def pairs(self) -> bool:
    return self.item_kind == "one_vs_one"

  def init(self, rng: jax.Array) -> Params:
    if self.pairs:
      return self.network.init(rng, jnp.zeros((1, PAIR_FEATURES)), method="score")["params"]
    dummy = jnp.zeros((1, 2))
    return self.network.init(rng, dummy, dummy)["params"]

  def item_values(self, phi: Params, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The DLN's value for every (sample, class) item, shape `logits.shape` (one_vs_one: the
    target class's entry is the value of its all-zero item)."""
    if labels.shape != logits.shape[:-1]:
      raise ValueError(
        f"labels shaped {labels.shape} do not fit logits shaped {logits.shape}: "
        "expected integer labels with the logits' leading shape"
      )
    y = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if self.pairs:
      return self.network.apply({"params": phi}, pair_items(logits, y), method="score")
    return self.network.apply({"params": phi}, jax.nn.log_softmax(logits), y)

  def loss(self, phi: Params, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """one_vs_rest: the mean over samples of the sum over classes of the item values;
    one_vs_one: the mean over all items."""
    values = self.item_values(phi, logits, labels)
    return values.mean() if self.pairs else values.sum(-1).mean()

  def item_loss(self, phi: Params, p: jax.Array, y: jax.Array) -> jax.Array:
    """The DLN's value for one_vs_rest items given the probability `p` and target `y` directly."""
    if self.pairs:
      raise ValueError("one_vs_one items depend on two probabilities: use DLN.pair_loss")
    log_p = jnp.log(jnp.clip(p, jnp.finfo(p.dtype).tiny, 1.0))
    return self.network.apply({"params": phi}, log_p, y)

  def pair_loss(self, phi: Params, p_true: jax.Array, p_other: jax.Array) -> jax.Array:
    """The DLN's value for one_vs_one items `(p_true, p_other, 1, 0)` given both sigmoid scores."""
    if not self.pairs:
      raise ValueError("one_vs_rest items depend on one probability: use DLN.item_loss")
    ones = jnp.ones_like(p_true)
    items = jnp.stack([p_true, p_other, ones, jnp.zeros_like(p_true)], axis=-1)
    return self.network.apply({"params": phi}, items, method="score")


def make_dln(cfg: ml_collections.ConfigDict) -> DLN:
  """The DLN of `config.dln`: any valid combination of items, network and activation."""
  common = dict(
    features=tuple(cfg.features),
    hidden=tuple(cfg.hidden),
    log_clip=float(cfg.log_clip),
    learn_scale=bool(cfg.learn_scale),
    activation=str(cfg.activation),
  )
  if cfg.network == "free":
    network = FreeNetwork(**common)
  elif cfg.network == "ce_residual":
    network = ItemNetwork(skip_init=float(cfg.skip_init), **common)
  else:
    raise ValueError(f"dln.network='{cfg.network}' is not one of {DLN_NETWORKS}")
  return DLN(network, item_kind=str(cfg.item_kind))
