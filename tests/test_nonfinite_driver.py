"""The driver's side of the non-finite skip (loop.py skips and counts; tests/test_loop.py checks
that): a run whose validation data holds a NaN goes on, and says so in a warning line."""

import dataclasses

import numpy as np

from conftest import small_config
from l2t_jax.data import Split, load_dataset
from l2t_jax.train import train


def test_skipped_loss_updates_are_logged_and_training_goes_on():
  config = small_config("l2t_dln", steps=100)
  config.meta.val_batch_size = 100  # 5 batches per pass over the 500 validation examples
  ds = load_dataset(config)
  x = ds.val.x.copy()
  x[7] = np.nan  # every validation batch that draws example 7 gives a NaN hypergradient
  lines = []
  result = train(config, log=lines.append, dataset=dataclasses.replace(ds, val=Split(x, ds.val.y)))
  s = result.summary
  assert s["skipped_meta_updates"] == 2  # 10 cycles: two passes over the validation split
  assert s["meta_updates"] == 8 and np.isfinite(s["final_train_ce"])
  warnings = [line for line in lines if line.startswith("warning:")]
  assert warnings == [
    "warning: 2 loss updates skipped after step 0 because the hypergradient or "
    "the teacher's output was not finite (2 in all); training goes on"
  ]
