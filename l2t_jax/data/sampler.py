"""Which examples each student step sees: a pure function of (seed, stream, step).

Every epoch is a fresh permutation drawn from `(seed, stream, epoch)`; batches are consecutive
slices of it and the remainder is dropped. Resuming from a step therefore needs only the step.
"""

from __future__ import annotations

import numpy as np

TRAIN_STREAM = 0
VAL_STREAM = 1


def _epoch_permutation(seed: int, stream: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, stream, epoch]).permutation(n)


def batch_indices(seed: int, stream: int, n: int, batch_size: int, start_step: int,
                  num_steps: int) -> np.ndarray:
  """Indices into a split of `n` examples for steps `[start_step, start_step + num_steps)`."""
  if batch_size > n:
    raise ValueError(f"batch size {batch_size} exceeds the {n} examples of the split; "
                     "lower train.batch_size or meta.val_batch_size")
  per_epoch = n // batch_size
  out = np.empty((num_steps, batch_size), dtype=np.int32)
  cached_epoch, perm = -1, None
  for i, step in enumerate(range(start_step, start_step + num_steps)):
    epoch, pos = divmod(step, per_epoch)
    if epoch != cached_epoch:
      cached_epoch, perm = epoch, _epoch_permutation(seed, stream, epoch, n)
    out[i] = perm[pos * batch_size:(pos + 1) * batch_size]
  return out


def eval_batches(n: int, batch_size: int) -> list[slice]:
  """Contiguous slices covering all `n` examples (the last may be shorter)."""
  return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
