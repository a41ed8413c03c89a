"""The own-loop example with a Flax NNX student that uses Dropout.

NNX is Flax's current API: the model is a Python object built with its parameters. `from_nnx`
turns it into the pure `Student` interface that `hypergradient` differentiates through; in
training, every student step draws its Dropout masks from its own key, which `hypergradient`
derives from the `rng` it is given (the segment re-run on the same key draws the same masks).

  python examples/nnx_student.py --steps 2000
"""

from __future__ import annotations

import argparse

import jax
import optax
from flax import nnx

import l2t_jax as l2t
from examples.own_loop import mnist1d_segments, teach
from l2t_jax import losses


class DropoutMLP(nnx.Module):
  def __init__(self, rngs: nnx.Rngs, width: int = 100, rate: float = 0.2):
    self.hidden = nnx.Linear(40, width, rngs=rngs)
    self.dropout = nnx.Dropout(rate, rngs=rngs)
    self.out = nnx.Linear(width, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(self.dropout(nnx.relu(self.hidden(x.reshape((x.shape[0], -1))))))


def main(steps: int = 2000, seed: int = 0) -> dict:
  sample_x, segments, (x_test, y_test) = mnist1d_segments(seed, steps, 10, 128, 250)
  student = l2t.from_nnx(lambda rngs: DropoutMLP(rngs))
  optimizer = optax.sgd(0.1, momentum=0.9)
  config = l2t.default_config()  # the library's DLN and teacher, as a config would build them
  config.dln.slope_bound, config.dln.learn_scale = 1.0, True
  s, phi, taught = teach(
    student,
    optimizer,
    l2t.make_student_loss(config.dln),
    l2t.make_teaching(config),
    losses.calibrated_ce,
    jax.random.PRNGKey(seed),
    sample_x,
    segments,
    steps,
  )
  logits, _ = student.apply(s.params, s.model_state, x_test, False)
  test_accuracy = float(losses.accuracy(logits, y_test))
  print(f"test accuracy {test_accuracy:.4f}")
  return {"test_accuracy": test_accuracy, "loss_params": phi, "teaching": taught, "student": s}


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  main(steps=args.steps, seed=args.seed)
