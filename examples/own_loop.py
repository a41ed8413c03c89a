"""A plain flax + optax training loop taught by the public teaching component of l2t_jax.

Your model, your optimizer, your batches; no l2t_jax driver, config or data pipeline. Every K
student steps, `hypergradient` runs those steps on the learned loss and differentiates the
validation loss after them (the student continues from them), and `Teaching.update` moves the DLN
and trains the teacher. The learned loss is the one the project's results use: the DLN tabulated
once per segment and bounded by cross-entropy's slopes (`StudentLoss`), with the default
experiment's settings (configs/mnist1d_mlp.py).

  python examples/own_loop.py --steps 2000
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterable

import flax.linen as nn
import jax
import numpy as np
import optax

import l2t_jax as l2t
from l2t_jax import losses
from l2t_jax.data import mnist1d
from l2t_jax.dln import ItemNetwork


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(100)(x.reshape((x.shape[0], -1))))
    return nn.Dense(10)(nn.relu(nn.Dense(100)(x)))


def teach(
  student: l2t.Student,
  optimizer: optax.GradientTransformation,
  loss: l2t.StudentLoss,
  teaching: l2t.Teaching,
  val_fn: Callable,
  rng: jax.Array,
  sample_x: jax.Array,
  segments: Iterable[tuple[Any, dict]],
  total_steps: int,
) -> tuple:
  """Trains `student` on `loss`, taught by `teaching`, over `segments`: pairs of K training
  batches (arrays with a leading K axis) and a validation batch. Returns the student's state, the
  DLN parameters and the teaching state. `rng` also keys the student's Dropout, if it has any."""
  rng_s, rng_d, rng_t = jax.random.split(rng, 3)
  s = l2t.init_student_state(student, optimizer, rng_s, sample_x)
  phi = loss.init(rng_d)
  taught = teaching.init(rng_t, phi)
  # Placed on the device now, as `segment`'s outputs are: otherwise its first call compiles a
  # program of its own.
  s, phi, taught = jax.device_put((s, phi, taught), jax.devices()[0])

  @jax.jit
  def segment(s, phi, taught, batches, val_batch, progress, key):
    hg = l2t.hypergradient(
      student,
      optimizer,
      loss.loss,
      val_fn,
      phi,
      s,
      batches,
      val_batch,
      prepare=loss.tabulate,
      rng=key,
    )
    phi, taught, _ = teaching.update(hg.grads, taught, phi, l2t.student_features(progress, hg))
    return hg.student, phi, taught, hg.val

  step = 0
  for batches, val_batch in segments:
    step += jax.tree_util.tree_leaves(batches)[0].shape[0]
    s, phi, taught, val = segment(
      s, phi, taught, batches, val_batch, step / total_steps, jax.random.fold_in(rng, step)
    )
    if step % 500 == 0:
      print(
        f"step {step:5d}  validation loss {float(val.loss):.4f}  accuracy {float(val.accuracy):.4f}"
      )
  return s, phi, taught


def mnist1d_segments(
  seed: int, steps: int, unroll_steps: int, batch_size: int, val_batch_size: int
):
  """MNIST-1D's training split less its last 500 examples, in segments of `unroll_steps` random
  batches, each with a random half of those 500 as its validation batch; and the test split."""
  x, y, x_test, y_test, _ = mnist1d.load()
  x_train, y_train, x_val, y_val = x[:-500], y[:-500], x[-500:], y[-500:]
  rng = np.random.default_rng(seed)

  def segments():
    for _ in range(steps // unroll_steps):
      idx = rng.integers(0, len(y_train), size=(unroll_steps, batch_size))
      val = rng.permutation(len(y_val))[:val_batch_size]
      yield {"x": x_train[idx], "y": y_train[idx]}, {"x": x_val[val], "y": y_val[val]}

  return x_train[:1], segments(), (x_test, y_test)


def main(steps: int = 2000, seed: int = 0) -> dict:
  unroll_steps = 10
  sample_x, segments, (x_test, y_test) = mnist1d_segments(seed, steps, unroll_steps, 128, 250)
  student = l2t.from_linen(Net())
  optimizer = optax.sgd(0.1, momentum=0.9)
  dln = l2t.DLN(
    ItemNetwork(
      features=("log_p", "y", "y_log_p", "log_1mp"),
      hidden=(16, 16),
      skip_init=1.0,
      log_clip=20.0,
      learn_scale=False,
    )
  )
  loss = l2t.StudentLoss(dln, table_size=256, slope_bound=1.0, slope_floor=0.1)
  teacher = l2t.LSTMTeacher(
    hidden=20, layers=2, output_scale=1e-2, preprocess_p=10.0, num_features=4
  )
  teaching = l2t.Teaching(
    teacher, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3)), teacher_every=5
  )
  s, phi, taught = teach(
    student,
    optimizer,
    loss,
    teaching,
    losses.calibrated_ce,
    jax.random.PRNGKey(seed),
    sample_x,
    segments,
    steps,
  )
  logits, _ = student.apply(s.params, s.model_state, x_test, False)
  test_accuracy = float(losses.accuracy(logits, y_test))
  print(f"test accuracy {test_accuracy:.4f}")
  return {"test_accuracy": test_accuracy, "loss_params": phi, "teaching": taught}


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  main(steps=args.steps, seed=args.seed)
