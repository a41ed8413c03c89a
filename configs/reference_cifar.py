"""CIFAR-10 and CIFAR-100, the students of configs/cifar.py, L2T-DLN under the authors' protocol
(l2t_jax.reference): one config per setting DATASET_STUDENT, named after a colon:

  l2t-train --config=configs/reference_cifar.py:cifar10_resnet8 --config.data.data_dir=DIR
"""

import os

from l2t_jax.config import config_file_module
from l2t_jax.reference import cifar_reference


def _cifar_settings():
  """configs/cifar.py, from beside this file."""
  return config_file_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar.py"))


def get_config(setting: str = ""):
  dataset, student = _cifar_settings().parse(setting, "configs/reference_cifar.py")
  return cifar_reference(dataset, student.pop("name"), **student)
