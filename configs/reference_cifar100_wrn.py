"""CIFAR-100, WRN-28-10, L2T-DLN under the authors' protocol: l2t_jax.reference.

The same student with our settings: configs/cifar100_wrn.py.
"""

from l2t_jax.reference import cifar_reference


def get_config():
  return cifar_reference("cifar100", "wrn", depth=28, widen_factor=10)
