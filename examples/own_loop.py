"""A plain flax + optax training loop that uses the DLN and the LSTM teacher directly.

No l2t_jax driver, config or data pipeline: your model, your optimizer, your batches. Every K
steps the loop differentiates the validation loss through the K steps it just took (the student's
trajectory continues from them), the teacher turns that gradient into a DLN update, and the teacher
itself learns from the validation gradient measured after its previous update (M = 1).

  python examples/own_loop.py --steps 2000
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from l2t_jax import losses
from l2t_jax.data import mnist1d
from l2t_jax.dln import DLN, ItemNetwork
from l2t_jax.students import from_linen
from l2t_jax.teacher import LSTMTeacher
from l2t_jax.unroll import StudentState, hypergradient


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(100)(x.reshape((x.shape[0], -1))))
    return nn.Dense(10)(x)


def main(steps: int = 2000, unroll_steps: int = 10, batch_size: int = 128, seed: int = 0) -> dict:
  x, y, x_test, y_test, _ = mnist1d.load()
  x_train, y_train, x_val, y_val = x[:-500], y[:-500], x[-500:], y[-500:]

  student = from_linen(Net())
  optimizer = optax.sgd(0.1, momentum=0.9)
  dln = DLN(ItemNetwork(features=("log_p", "y", "y_log_p"), hidden=(16,), skip_init=1.0,
                        log_clip=20.0))
  teacher = LSTMTeacher(hidden=20, layers=1, output_scale=1e-3, preprocess_p=10.0)
  teacher_opt = optax.adam(1e-3)

  rng_s, rng_d, rng_t = jax.random.split(jax.random.PRNGKey(seed), 3)
  params, model_state = student.init(rng_s, jnp.asarray(x_train[:1]))
  s = StudentState(params, model_state, optimizer.init(params))
  phi = dln.init(rng_d)
  theta = teacher.init(rng_t)
  theta_opt = teacher_opt.init(theta)
  memory = teacher.init_state(phi)
  no_features = jnp.zeros((1, 0))

  @jax.jit
  def segment(s, phi, batches, val_batch):
    """K student steps on the DLN loss, and d(val loss)/d(phi) through them."""
    hg = hypergradient(student, optimizer, dln.loss, losses.cross_entropy, phi, s, batches,
                       val_batch)
    return hg.student, hg.grads, hg.val.loss

  @jax.jit
  def teach(theta, theta_opt, memory, phi, grads, prev_memory, prev_grads):
    """Teacher learns from its previous step's outcome, then updates the DLN."""
    g = ravel_pytree(grads)[0]
    g_prev = ravel_pytree(prev_grads)[0]
    teacher_grads = jax.grad(teacher.surrogate_loss)(theta, prev_memory, g_prev[None], no_features,
                                                     g[None])
    updates, theta_opt = teacher_opt.update(teacher_grads, theta_opt, theta)
    theta = optax.apply_updates(theta, updates)
    dln_updates, new_memory = teacher.step(theta, memory, grads)
    return theta, theta_opt, new_memory, optax.apply_updates(phi, dln_updates)

  rng = np.random.default_rng(seed)
  val_batch = {"x": jnp.asarray(x_val), "y": jnp.asarray(y_val)}
  prev = None
  for start in range(0, steps, unroll_steps):
    idx = rng.integers(0, len(y_train), size=(unroll_steps, batch_size))
    batches = {"x": jnp.asarray(x_train[idx]), "y": jnp.asarray(y_train[idx])}
    s, grads, val_loss = segment(s, phi, batches, val_batch)
    if prev is None:  # the first step has no earlier outcome to learn from
      dln_updates, new_memory = teacher.step(theta, memory, grads)
      prev, memory, phi = (memory, grads), new_memory, optax.apply_updates(phi, dln_updates)
      continue
    before = memory
    theta, theta_opt, memory, phi = teach(theta, theta_opt, memory, phi, grads, *prev)
    prev = (before, grads)
    if (start + unroll_steps) % 500 == 0:
      print(f"step {start + unroll_steps:5d}  val loss {float(val_loss):.4f}")

  logits, _ = student.apply(s.params, s.model_state, jnp.asarray(x_test), False)
  test_accuracy = float(losses.accuracy(logits, jnp.asarray(y_test)))
  print(f"test accuracy {test_accuracy:.4f}")
  return {"test_accuracy": test_accuracy, "val_loss": float(val_loss)}


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  main(steps=args.steps, seed=args.seed)
