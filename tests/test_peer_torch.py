"""The PyTorch peer of benchmarks/speed.py computes what we compute: its DLN loss and validation
objective equal ours on the same parameters (skipped where torch is not installed, as in CI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from benchmarks import peer_torch
from benchmarks.common import load_config
from l2t_jax import losses
from l2t_jax.dln import make_dln

torch = pytest.importorskip("torch")


def peer_phi(phi: dict) -> dict:
  """Our DLN parameters in the peer's layout (w0, b0, ..., w_out, b_out, skip, log_scale)."""
  dense = sorted((k for k in phi if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
  out = {}
  for i, name in enumerate(dense):
    key = "_out" if i == len(dense) - 1 else str(i)
    out[f"w{key}"] = torch.tensor(np.asarray(phi[name]["kernel"]))
    if "bias" in phi[name]:
      out[f"b{key}"] = torch.tensor(np.asarray(phi[name]["bias"]))
  for name in ("skip", "log_scale"):
    if name in phi:
      out[name] = torch.tensor(np.asarray(phi[name]))
  return out


@pytest.mark.parametrize("config_name", ["mnist1d_mlp", "reference_mnist1d_mlp"])
def test_the_peer_scores_the_items_and_the_validation_batch_as_we_do(config_name):
  config = load_config(config_name)
  config.dln.table_size = 0  # the peer evaluates the DLN exactly; so does `dln.loss`
  dln = make_dln(config.dln)
  flat, unravel = ravel_pytree(dln.init(jax.random.PRNGKey(0)))
  phi = unravel(flat + 0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
  setting = peer_torch.Setting.from_config(config, 40, 10, 32)
  logits = 3.0 * jax.random.normal(jax.random.PRNGKey(2), (32, 10))
  labels = jnp.arange(32) % 10
  z, y = torch.tensor(np.asarray(logits)), torch.tensor(np.asarray(labels), dtype=torch.long)
  theirs = peer_torch.dln_loss(
    setting, peer_phi(phi), z, torch.nn.functional.one_hot(y, 10).float()
  )
  np.testing.assert_allclose(float(theirs), float(dln.loss(phi, logits, labels)), rtol=1e-5)
  ours_val = losses.validation_objective(config.meta.val_objective, 5.0, 0.3)(logits, labels)
  np.testing.assert_allclose(
    float(peer_torch.val_objective(setting, z, y)), float(ours_val), rtol=1e-5
  )
