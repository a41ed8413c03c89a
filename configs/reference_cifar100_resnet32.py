"""CIFAR-100, ResNet-32, L2T-DLN under the authors' protocol: l2t_jax.reference.

The same student with our settings: configs/cifar100_resnet32.py.
"""

from l2t_jax.reference import cifar_reference


def get_config():
  return cifar_reference("cifar100", "resnet", depth=32)
