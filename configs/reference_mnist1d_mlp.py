"""MNIST-1D, MLP student (100-100), L2T-DLN under the authors' protocol (l2t_jax/reference.py):
one-vs-one sigmoid-pair items, a free bias-free 4-40-40-40-40-1 LeakyReLU DLN, a 2-64-64-64-1
stacked-cell LSTM teacher (output x 1e-3, Adam 1e-3), the exact one-step teacher gradient by
re-unrolling the same 15 batches (the student continues from that second unroll), plain SGD at 0.1
with batch 25, validation batch 100, and the 4000 training examples halved at random into train /
validation every epoch (20 meta-iterations, 300 steps). 6000 student steps, as the default
experiment (configs/mnist1d_mlp.py).
"""

from l2t_jax.reference import reference_config


def get_config():
  return reference_config("mnist1d", "mlp", steps=6000, eval_every=300, hidden=(100, 100))
