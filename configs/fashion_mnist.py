"""Fashion-MNIST (Xiao et al. 2017; 60k training and 10k test images, 28x28 grey, 10 classes), the
paper's MNIST students, L2T-DLN with the default experiment's settings of the method
(configs/mnist1d_mlp.py): one config per student, named after a colon:

  l2t-train --config=configs/fashion_mnist.py:mlp --workdir=runs/fmnist_mlp
  l2t-train --config=configs/fashion_mnist.py:lenet --config.method=ce --workdir=runs/fmnist_lenet_ce

The images are read from the IDX files of Debian's package (apt-get install dataset-fashion-mnist,
/usr/share/datasets/fashion-mnist), or another folder (--config.data.data_dir=DIR), or through TFDS
(--config.data.source=tfds). The last 5000 training images are the validation split.

Students: `mlp`, the MLP 500-300 (ReLU); `lenet`, LeNet-5 (ReLU, max pooling). Schedule (ours):
SGD with momentum 0.9 at a constant rate 0.1 (the rate cross-entropy is tuned to on MNIST-1D;
benchmarks/suite.py sweeps it per task), batch 128, 5000 steps: 11.6 epochs of the 55k training
images, by which cross-entropy's validation accuracy has stopped rising on the clean task
(benchmarks/results/README.md). Label noise for the noisy-label tasks:
`--config.data.label_noise=0.4 --config.data.label_noise_kind=pair` (or `symmetric`), and
`--config.data.noisy_val=True` to put the same noise on the validation split too.
"""

import os

from l2t_jax.config import config_file_module

STUDENTS = {"mlp": {"name": "mlp", "hidden": (500, 300)}, "lenet": {"name": "lenet5"}}


def task_overrides(student: str) -> dict:
  """What makes the default experiment's config this one: the data, the student, the length and
  how often it is evaluated (benchmarks/suite.py applies the same keys on top of every method)."""
  if student not in STUDENTS:
    raise ValueError(
      f"unknown Fashion-MNIST student '{student}'; choose one of {', '.join(STUDENTS)} "
      "(--config=configs/fashion_mnist.py:mlp)"
    )
  return {
    "data.name": "fashion_mnist",
    "data.val_size": 5000,
    **{f"student.{key}": value for key, value in STUDENTS[student].items()},
    "train.steps": 5000,
    "train.eval_every": 1000,
    "train.log_every": 500,
  }


def _default_experiment():
  """configs/mnist1d_mlp.py, from beside this file."""
  return config_file_module(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist1d_mlp.py")
  )


def get_config(student: str = "mlp"):
  config = _default_experiment().get_config()
  for key, value in task_overrides(student).items():
    section, field = key.split(".")
    config[section][field] = value
  return config
