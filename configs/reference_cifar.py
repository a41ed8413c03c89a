"""CIFAR-10 and CIFAR-100, the students of configs/cifar.py, L2T-DLN under the authors' protocol
(l2t_jax.reference): one config per setting DATASET_STUDENT, named after a colon:

  l2t-train --config=configs/reference_cifar.py:cifar10_resnet8 --config.data.data_dir=DIR
"""

import importlib.util
import os

from l2t_jax.reference import cifar_reference


def _cifar_settings():
  """configs/cifar.py, read from beside this file: config files are loaded by path, so their
  directory need not be importable."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar.py")
  spec = importlib.util.spec_from_file_location("l2t_jax_config_cifar", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(setting: str = ""):
  dataset, student = _cifar_settings().parse(setting, "configs/reference_cifar.py")
  return cifar_reference(dataset, student.pop("name"), **student)
