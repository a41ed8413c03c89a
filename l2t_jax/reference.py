"""The authors' protocol as a configuration of this library.

The public PyTorch code of the paper's authors (github.com/1017137588qqcom/L2T-DLN, CIFAR
classification) differs from the method as we implement it in a handful of choices; each is a key
of `config.default_config()`, and `PROTOCOL` gives the authors' value of every one of them:

- DLN items: for every wrong class c, `(sigmoid(z_y), sigmoid(z_c), 1, 0)`; the loss the mean over
  all items (`dln.item_kind='one_vs_one'`);
- DLN: a bias-free 4-40-40-40-40-1 MLP with LeakyReLU (slope 0.01), He-normal fan-out
  initialisation, no cross-entropy path, evaluated exactly (`dln.network='free'`, no table);
- teacher: four stacked LSTM cells 2-64-64-64-1, the last cell's output times 1e-3 the update, no
  student-state inputs, Adam 1e-3 without clipping (`teacher.network='stacked_cells'`);
- one meta-iteration: K = 15 steps of batch 25, validation batch 100; the teacher's gradient
  through a second unroll of the same batches from the same start with the proposed DLN, which the
  student continues from, every iteration (`teacher.gradient` and `meta.continue_from`
  'reunroll', `meta.teacher_every=1`);
- the student: plain SGD at 0.1, no momentum, no weight decay, constant rate;
- data: the training split halved at random into train / validation, re-drawn every epoch
  (`data.split='redrawn_half'`).

`reference_config` builds a whole experiment: one of the paper's students on its dataset under
that protocol (the configs `configs/reference_*.py`).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from l2t_jax.config import default_config

# (dotted key, the authors' value). `teacher.gradient` and `meta.continue_from` are the keys of the
# exact one-step teacher gradient (l2t_jax.teaching).
PROTOCOL: tuple[tuple[str, Any], ...] = (
  ("method", "l2t_dln"),
  ("dln.item_kind", "one_vs_one"),
  ("dln.network", "free"),
  ("dln.hidden", (40, 40, 40, 40)),
  ("dln.activation", "leaky_relu"),
  ("dln.learn_scale", False),
  ("dln.table_size", 0),
  ("dln.slope_bound", 0.0),
  ("teacher.network", "stacked_cells"),
  ("teacher.hidden", 64),
  ("teacher.layers", 4),
  ("teacher.state_features", False),
  ("teacher.output_scale", 1e-3),
  ("teacher.preprocess_p", 10.0),
  ("teacher.learning_rate", 1e-3),
  ("teacher.grad_clip", 0.0),
  ("teacher.gradient", "reunroll"),
  ("meta.continue_from", "reunroll"),
  ("meta.unroll_steps", 15),
  ("meta.interval", 15),
  ("meta.teacher_every", 1),
  ("meta.val_batch_size", 100),
  ("meta.val_objective", "ce"),
  ("optim.name", "sgd"),
  ("optim.learning_rate", 0.1),
  ("optim.momentum", 0.0),
  ("optim.nesterov", False),
  ("optim.weight_decay", 0.0),
  ("optim.schedule", "constant"),
  ("optim.boundaries", ()),
  ("optim.warmup_steps", 0),
  ("train.batch_size", 25),
  ("data.split", "redrawn_half"),
)

# The authors' run: 10 epochs, each one pass of the validation batches (100) over the validation
# half (25k of CIFAR's 50k), one meta-iteration of 15 student steps per batch.
CIFAR_STEPS = 10 * (25_000 // 100) * 15
CIFAR_EPOCH_STEPS = CIFAR_STEPS // 10


def apply_protocol(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` (changed in place and returned) with every key of `PROTOCOL` at the authors' value;
  the task (data, student, steps) stays as it was."""
  for key, value in PROTOCOL:
    *groups, leaf = key.split(".")
    target = config
    for group in groups:
      target = target[group]
    target[leaf] = value
  return config


def reference_config(
  dataset: str, student: str, steps: int, eval_every: int, **student_fields: Any
) -> ml_collections.ConfigDict:
  """The paper's `student` on `dataset` under the authors' protocol, for `steps` student steps
  (a multiple of the 15-step meta-iteration), evaluated every `eval_every`; `student_fields` set
  `config.student` (depth, widths, ...). CIFAR gets the authors' augmentation (pad 4, crop,
  flip) and checkpoints every `eval_every` steps."""
  c = apply_protocol(default_config())
  c.data.name = dataset
  c.data.augment = dataset.startswith("cifar")
  c.student.name = student
  for key, value in student_fields.items():
    c.student[key] = value
  c.train.steps = steps
  c.train.eval_every = c.train.log_every = eval_every
  if c.data.augment:
    c.checkpoint.every = eval_every
  return c


def cifar_reference(dataset: str, student: str, **student_fields: Any) -> ml_collections.ConfigDict:
  """`reference_config` for CIFAR-10/100 with the authors' length (10 epochs of 3750 steps),
  evaluated and checkpointed once an epoch."""
  return reference_config(dataset, student, CIFAR_STEPS, CIFAR_EPOCH_STEPS, **student_fields)
