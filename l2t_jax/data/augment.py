"""CIFAR augmentation on the accelerator: zero-pad, random crop back to size, random horizontal flip.

Runs inside the jitted cycle, after the batch is gathered by index. Every example's randomness is a
pure function of (seed, student step, position in the global batch), so a resumed run and a run on
any number of devices augment every example exactly alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENT_STREAM = 2  # beside the sampler's TRAIN_STREAM = 0 and VAL_STREAM = 1


def example_keys(seed: int, step: jax.Array, positions: jax.Array) -> jax.Array:
  """One PRNG key per example of the batch at `step`, `positions` being its places in the batch."""
  base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), AUGMENT_STREAM), step)
  return jax.vmap(lambda p: jax.random.fold_in(base, p))(positions)


def crop_and_flip(key: jax.Array, image: jax.Array, padding: int) -> jax.Array:
  """One image (H, W, C): pad by `padding` pixels of zero (the mean after standardisation), crop a
  random HxW window, flip left-right with probability 1/2."""
  height, width, channels = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  k_y, k_x, k_flip = jax.random.split(key, 3)
  top = jax.random.randint(k_y, (), 0, 2 * padding + 1)
  left = jax.random.randint(k_x, (), 0, 2 * padding + 1)
  crop = jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
  return jnp.where(jax.random.bernoulli(k_flip), crop[:, ::-1], crop)


def crop_and_flip_batch(keys: jax.Array, images: jax.Array, padding: int) -> jax.Array:
  """`crop_and_flip` over a batch (B, H, W, C) with one key per image."""
  return jax.vmap(crop_and_flip, in_axes=(0, 0, None))(keys, images, padding)
