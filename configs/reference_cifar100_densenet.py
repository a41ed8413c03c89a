"""CIFAR-100, DenseNet-BC-100, L2T-DLN under the authors' protocol: l2t_jax.reference.

The same student with our settings: configs/cifar100_densenet.py.
"""

from l2t_jax.reference import cifar_reference


def get_config():
  return cifar_reference("cifar100", "densenet", depth=100, growth_rate=12)
