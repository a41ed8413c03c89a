"""CIFAR-10, ResNet-20, L2T-DLN under the authors' protocol: l2t_jax.reference.

The same student with our settings: configs/cifar10_resnet20.py.
"""

from l2t_jax.reference import cifar_reference


def get_config():
  return cifar_reference("cifar10", "resnet", depth=20)
