"""Which examples each student step sees: a pure function of (seed, stream, step).

Every epoch is a fresh permutation drawn from `(seed, stream, epoch)`; batches are consecutive
slices of it and the remainder is dropped. Resuming from a step therefore needs only the step.

With `data.split='redrawn_half'` (the authors' protocol) the training split of `n` examples is
divided at random into a training half (`n - n // 2`) and a validation half (`n // 2`), drawn from
`(seed, epoch)`. An epoch is one pass of the meta-objective's validation batches over the
validation half, `n // 2 // val_batch_size` cycles, as in the authors' loop (a new split, then one
meta-iteration per validation batch); the training batches of those cycles come from the training
half. Still a pure function of the cycle, so resuming stays exact.
"""

from __future__ import annotations

import numpy as np

TRAIN_STREAM = 0
VAL_STREAM = 1
SPLIT_STREAM = 2


def _epoch_permutation(seed: int, stream: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, stream, epoch]).permutation(n)


def batch_indices(
  seed: int, stream: int, n: int, batch_size: int, start_step: int, num_steps: int
) -> np.ndarray:
  """Indices into a split of `n` examples for steps `[start_step, start_step + num_steps)`."""
  if batch_size > n:
    raise ValueError(
      f"batch size {batch_size} exceeds the {n} examples of the split; "
      "lower train.batch_size or meta.val_batch_size"
    )
  per_epoch = n // batch_size
  out = np.empty((num_steps, batch_size), dtype=np.int32)
  cached_epoch, perm = -1, None
  for i, step in enumerate(range(start_step, start_step + num_steps)):
    epoch, pos = divmod(step, per_epoch)
    if epoch != cached_epoch:
      cached_epoch, perm = epoch, _epoch_permutation(seed, stream, epoch, n)
    out[i] = perm[pos * batch_size : (pos + 1) * batch_size]
  return out


def half_split(seed: int, epoch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  """The epoch's `(training half, validation half)` of a split of `n` examples: disjoint, together
  all of them; the validation half has `n // 2`."""
  perm = _epoch_permutation(seed, SPLIT_STREAM, epoch, n).astype(np.int32)
  return perm[: n - n // 2], perm[n - n // 2 :]


def cycles_per_split(n: int, val_batch_size: int) -> int:
  """Cycles between re-draws of the halves: one pass of the validation batches over its half."""
  if not 0 < val_batch_size <= n // 2:
    raise ValueError(
      f"validation batch {val_batch_size} does not fit the validation half of "
      f"{n // 2} examples; lower meta.val_batch_size"
    )
  return n // 2 // val_batch_size


def redrawn_half_indices(
  seed: int, n: int, batch_size: int, val_batch_size: int, cycle: int, interval: int
) -> tuple[np.ndarray, np.ndarray]:
  """`(training indices (interval, batch_size), validation indices (val_batch_size,))` into the
  whole training split for `cycle`, under the redrawn halves of its epoch (module docstring)."""
  per_split = cycles_per_split(n, val_batch_size)
  train_half, val_half = half_split(seed, cycle // per_split, n)
  train = batch_indices(seed, TRAIN_STREAM, len(train_half), batch_size, cycle * interval, interval)
  val = batch_indices(seed, VAL_STREAM, len(val_half), val_batch_size, cycle, 1)[0]
  return train_half[train], val_half[val]


def eval_batches(n: int, batch_size: int) -> list[slice]:
  """Contiguous slices covering all `n` examples (the last may be shorter)."""
  return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
