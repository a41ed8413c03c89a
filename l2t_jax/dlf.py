"""L2T-DLF (Wu et al. 2018), the baseline: an MLP teacher maps the student's state to the
parameters `(W, b)` of the loss `-sigmoid(y^T W log p + b)`.

The teacher's output layer starts at zero around `W = I, b = 0`, and it is trained by the same
reverse-mode hypergradient as the DLN (through the loss parameters into the MLP).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def dlf_loss(loss_params: dict, logits: jax.Array, labels: jax.Array) -> jax.Array:
  log_p = jax.nn.log_softmax(logits)
  rows = loss_params["W"][labels]  # (batch, classes): y^T W
  return -jax.nn.sigmoid((rows * log_p).sum(-1) + loss_params["b"]).mean()


class DLFNetwork(nn.Module):
  hidden: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, features: jax.Array) -> dict:
    h = features
    for width in self.hidden:
      h = jnp.tanh(nn.Dense(width)(h))
    c = self.num_classes
    out = nn.Dense(c * c + 1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)
    return {"W": jnp.eye(c, dtype=out.dtype) + out[:-1].reshape(c, c), "b": out[-1]}


@dataclasses.dataclass(frozen=True)
class DLFTeacher:
  network: DLFNetwork
  num_features: int

  def init(self, rng: jax.Array) -> Any:
    return self.network.init(rng, jnp.zeros((self.num_features,)))["params"]

  def loss_params(self, omega: Any, features: jax.Array) -> dict:
    return self.network.apply({"params": omega}, jax.lax.stop_gradient(features))
