"""The authors' protocol as options of the library: one-vs-one items, the free DLN, the stacked-cell
teacher, the re-drawn half split, the refusals of what cannot work, and the reference configs.

The tests marked `needs_reunroll` load a reference config, which sets `teacher.gradient` and
`meta.continue_from` (the exact one-step teacher gradient, another branch of this project); they
pass once that branch is merged.

The tests compute in jitted programs: eagerly, every operation compiles a program of its own. The
teachers are initialised eagerly: their initialisers are jitted already, one program per shape that
the LSTM cells share, where one jitted program would compile each kernel's again.
"""

import json
import math

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cifar
from conftest import small_config, fast_jit
from l2t_jax import dln_table
from l2t_jax.config import ConfigError, default_config, validate
from l2t_jax.data import load_dataset
from l2t_jax.data.sampler import cycles_per_split, half_split, redrawn_half_indices
from l2t_jax.dln import ACTIVATIONS, DLN, FreeNetwork, make_dln, pair_items
from l2t_jax.build import make_teacher
from l2t_jax.teacher import LSTMTeacher
from l2t_jax.teacher_io import FORMAT, load_teacher, save_teacher
from l2t_jax.train import build_run, cycle_indices

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2, sigmoid(-ln 3) = 1/4
REFERENCE_CONFIGS = ["reference_mnist1d_mlp"] + [f"reference_{s}" for s in cifar.SETTINGS]


def _free_dln_config(item_kind="one_vs_one", hidden=(40, 40, 40, 40), activation="leaky_relu"):
  cfg = default_config().dln
  cfg.item_kind, cfg.network, cfg.hidden, cfg.activation = item_kind, "free", hidden, activation
  cfg.table_size = 0 if item_kind == "one_vs_one" else cfg.table_size
  return cfg


# --- one-vs-one items --------------------------------------------------------------------------


def test_one_vs_one_items_and_loss_on_a_hand_computed_case():
  logits = np.array([[0.0, LN3, -LN3], [LN3, 0.0, 0.0]], np.float32)
  labels = np.array([1, 0])
  # A free network without hidden layers is the bias-free linear map w . item, w = (1, 2, 3, 4).
  dln = DLN(FreeNetwork(hidden=()), item_kind="one_vs_one")
  phi = {"Dense_0": {"kernel": np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)}}

  @fast_jit
  def computed(phi, logits, labels):
    return dict(
      items=pair_items(logits, jax.nn.one_hot(labels, 3)),
      values=dln.item_values(phi, logits, labels),
      loss=dln.loss(phi, logits, labels),
      grad=jax.grad(lambda z: dln.loss(phi, z, labels))(logits),
      pair_loss=dln.pair_loss(phi, jnp.array([0.75]), jnp.array([0.25])),
    )

  out = computed(phi, logits, labels)
  expected = np.array(
    [
      [[0.75, 0.5, 1, 0], [0, 0, 0, 0], [0.75, 0.25, 1, 0]],
      [[0, 0, 0, 0], [0.75, 0.5, 1, 0], [0.75, 0.5, 1, 0]],
    ]
  )
  np.testing.assert_allclose(out["items"], expected, rtol=1e-6, atol=1e-7)

  # The items' values are 4.75, 0, 4.25 and 0, 4.75, 4.75; the loss is their mean over all six.
  np.testing.assert_allclose(out["values"], [[4.75, 0.0, 4.25], [0.0, 4.75, 4.75]], rtol=1e-6)
  np.testing.assert_allclose(out["loss"], 18.5 / 6, rtol=1e-6)
  # The gradient reaches the logits through the sigmoids: z_y through both wrong-class items
  # (weight 1 each), z_c through its own (weight 2); sigmoid'(z) = s (1 - s).
  np.testing.assert_allclose(
    out["grad"],
    np.array([[2 * 0.25, 2 * 0.1875, 2 * 0.1875], [2 * 0.1875, 2 * 0.25, 2 * 0.25]]) / 6,
    rtol=1e-5,
  )
  np.testing.assert_allclose(out["pair_loss"], [4.25], rtol=1e-6)
  with pytest.raises(ValueError, match="use DLN.pair_loss"):
    dln.item_loss(phi, np.array([0.5], np.float32), np.array([1.0], np.float32))


def test_free_dln_is_bias_free_he_normal_fan_out_and_zero_on_zero_items():
  dln = make_dln(_free_dln_config(hidden=(300, 300)))

  @fast_jit
  def computed():
    phi = dln.init(jax.random.PRNGKey(0))
    zero_scores = dln.network.apply({"params": phi}, jnp.zeros((5, 4)), method="score")
    values = dln.item_values(phi, jnp.array([[1.0, -2.0, 0.5]]), jnp.array([2]))
    return phi, zero_scores, values, ACTIVATIONS["leaky_relu"](jnp.array([-1.0, 2.0]))

  phi, zero_scores, values, leaky = jax.device_get(computed())
  assert set(phi) == {"Dense_0", "Dense_1", "Dense_2"}
  assert all(set(layer) == {"kernel"} for layer in phi.values())  # no biases, no skip path
  for layer in phi.values():
    kernel = np.asarray(layer["kernel"])
    tol = 0.15 if kernel.shape[1] == 1 else 0.06  # the output layer has only 300 weights
    assert abs(kernel.std() / math.sqrt(2.0 / kernel.shape[1]) - 1) < tol, kernel.shape
    assert abs(kernel.mean()) < 3 * kernel.std() / math.sqrt(kernel.size)
  np.testing.assert_array_equal(zero_scores, 0)
  assert values[0, 2] == 0 and bool(np.all(values[0, :2] != 0))
  np.testing.assert_allclose(leaky, [-0.01, 2.0])


def test_free_dln_on_one_vs_rest_items_is_served_by_the_table():
  dln = make_dln(_free_dln_config("one_vs_rest", hidden=(16, 16), activation="tanh"))
  rng = np.random.default_rng(0)
  logits = (3.0 * rng.normal(size=(32, 10))).astype(np.float32)
  labels = rng.integers(0, 10, size=32)

  @fast_jit
  def exact_and_tabulated(logits, labels):
    phi = dln.init(jax.random.PRNGKey(1))
    table = dln_table.make_table(dln, phi, 256)
    return phi, dln.loss(phi, logits, labels), dln_table.table_loss(table, logits, labels)

  phi, exact, tabulated = exact_and_tabulated(logits, labels)
  assert "skip" not in phi
  np.testing.assert_allclose(tabulated, exact, rtol=1e-3, atol=1e-3 * abs(float(exact)))
  with pytest.raises(ValueError, match="set dln.table_size=0"):
    pairs = make_dln(_free_dln_config())
    dln_table.make_table(pairs, fast_jit(pairs.init)(jax.random.PRNGKey(0)), 64)


# --- the stacked-cell teacher ------------------------------------------------------------------


def test_stacked_cells_teacher_outputs_its_last_one_unit_cell_and_learns():
  teacher = LSTMTeacher(
    hidden=4, layers=3, output_scale=1e-3, preprocess_p=10.0, network="stacked_cells"
  )
  theta = teacher.init(jax.random.PRNGKey(0))

  @fast_jit
  def computed(theta):
    memory = teacher.init_state({"a": jnp.zeros((3, 4)), "b": jnp.zeros((5,))})
    g = jax.random.normal(jax.random.PRNGKey(1), (17,)) * 1e-2
    grads = jax.grad(teacher.surrogate_loss)(
      theta, memory, g[None], jnp.zeros((1, 4)), jnp.ones((1, 17))
    )
    return memory, teacher.step_flat(theta, memory, g), grads

  memory, step, grads = jax.device_get(computed(theta))
  assert set(theta) == {"lstm_0", "lstm_1", "lstm_2"}  # no readout
  assert [c.shape for c, _ in memory] == [(17, 4), (17, 4), (17, 1)]
  assert step.updates.shape == (17,)
  last_h = step.memory[-1][1][:, 0]
  np.testing.assert_allclose(step.updates, 1e-3 * last_h, rtol=1e-6)
  assert bool(np.all(np.abs(step.updates) < 1e-3)) and bool(np.any(step.updates != 0))
  for cell in grads.values():
    flat = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(cell)])
    assert np.all(np.isfinite(flat)) and np.any(flat != 0)


def test_teacher_network_is_part_of_the_saved_architecture(tmp_path):
  stacked = default_config().teacher
  stacked.network, stacked.hidden, stacked.layers, stacked.state_features = (
    "stacked_cells",
    8,
    2,
    False,
  )
  theta = make_teacher(stacked).init(jax.random.PRNGKey(0))
  path = str(tmp_path / "teacher.msgpack")
  save_teacher(path, theta, stacked)
  loaded = load_teacher(path, stacked, make_teacher(stacked))
  assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(theta)
  readout = stacked.copy_and_resolve_references()
  readout.network = "lstm_readout"
  with pytest.raises(
    ConfigError, match="teacher.network: file 'stacked_cells' vs config 'lstm_readout'"
  ):
    load_teacher(path, readout, make_teacher(readout))

  # A file from before the key existed holds an lstm_readout teacher.
  ours = default_config().teacher
  arch = {
    k: v
    for k, v in json.loads(ours.to_json()).items()
    if k not in ("learning_rate", "grad_clip", "network")
  }
  old = str(tmp_path / "old.msgpack")
  params = flax.serialization.to_state_dict(make_teacher(ours).init(jax.random.PRNGKey(1)))
  with open(old, "wb") as f:
    f.write(
      flax.serialization.msgpack_serialize(
        {"format": FORMAT, "architecture": json.dumps(arch), "params": params}
      )
    )
  load_teacher(old, ours, make_teacher(ours))


# --- the re-drawn half split -------------------------------------------------------------------


def test_redrawn_halves_are_disjoint_cover_the_split_and_change_every_epoch():
  n, batch, val_batch, interval = 103, 7, 10, 3
  per_split = cycles_per_split(n, val_batch)
  assert per_split == 5  # 51 validation examples, 10 a batch
  halves = [half_split(0, e, n) for e in range(3)]
  for train_half, val_half in halves:
    assert (len(train_half), len(val_half)) == (52, 51)
    assert not set(train_half) & set(val_half)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_half, val_half])), np.arange(n))
  assert not np.array_equal(np.sort(halves[0][1]), np.sort(halves[1][1]))
  assert not np.array_equal(np.sort(half_split(1, 0, n)[1]), np.sort(halves[0][1]))
  for epoch, (train_half, val_half) in enumerate(halves):
    seen_val = []
    for c in range(epoch * per_split, (epoch + 1) * per_split):
      train_idx, val_idx = redrawn_half_indices(0, n, batch, val_batch, c, interval)
      assert train_idx.shape == (interval, batch) and val_idx.shape == (val_batch,)
      assert set(train_idx.ravel()) <= set(train_half) and set(val_idx) <= set(val_half)
      seen_val.extend(val_idx)
    assert len(set(seen_val)) == per_split * val_batch  # one pass over the validation half


def test_redrawn_split_dataset_and_refusals():
  config = small_config("ce")
  config.data.split = "redrawn_half"
  ds = load_dataset(config)
  assert len(ds.train) == 4000 and ds.val is ds.train  # no carve-out: CE trains on all of it

  config.method = "l2t_dln"
  config.data.val_size = 0  # unused with redrawn halves
  validate(config)
  config.meta.val_batch_size = 2001
  with pytest.raises(
    ConfigError,
    match=r"meta.val_batch_size=2001 exceeds the validation half "
    r"\(2000 of the 4000",
  ):
    build_run(config, ds)
  config.meta.val_batch_size, config.data.use_val_for_training = 100, True
  with pytest.raises(ConfigError, match="set data.use_val_for_training=False"):
    validate(config)


def test_a_run_draws_its_redrawn_half_batches_as_a_function_of_the_cycle():
  """Resuming is exact: a checkpoint holds the step, and the batches follow from it. (A run on
  redrawn halves end to end: the reference smoke run below.)"""
  config = small_config("l2t_dln", steps=20)
  config.data.split, config.meta.val_batch_size = "redrawn_half", 500  # 4 cycles per epoch
  run = build_run(config)
  cycles = [tuple(np.asarray(a) for a in idx) for idx in cycle_indices(run, 0, 12)]
  # A run resumed at cycle 5 (a checkpoint holds the step only) sees the same batches.
  for a, b in zip(cycles[5:], cycle_indices(run, 5, 12)):
    np.testing.assert_array_equal(a[0], np.asarray(b[0]))
    np.testing.assert_array_equal(a[1], np.asarray(b[1]))
  for epoch in range(3):
    train_seen = {int(i) for t, _ in cycles[4 * epoch : 4 * epoch + 4] for i in t.ravel()}
    val_seen = [int(i) for _, v in cycles[4 * epoch : 4 * epoch + 4] for i in v]
    assert len(val_seen) == len(set(val_seen)) == 2000 and not train_seen & set(val_seen)
  assert set(int(i) for i in cycles[0][1]) != set(int(i) for i in cycles[4][1])


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "changes,message",
  [
    (
      {"dln.item_kind": "one_vs_one", "dln.table_size": 0},
      "cannot score dln.item_kind='one_vs_one' pairs: set dln.network='free' or "
      "dln.item_kind='one_vs_rest'",
    ),
    (
      {"dln.item_kind": "one_vs_one", "dln.network": "free"},
      "depends on two (sigmoid(z_y), sigmoid(z_c)): set dln.table_size=0",
    ),
    ({"dln.item_kind": "pairs"}, "dln.item_kind='pairs' is not one of"),
    ({"dln.network": "mlp"}, "dln.network='mlp' is not one of"),
    ({"dln.activation": "relu"}, "dln.activation='relu' is not one of"),
    ({"teacher.network": "gru"}, "teacher.network='gru' is not one of"),
    ({"data.split": "random"}, "data.split='random' is not one of"),
  ],
)
def test_combinations_that_cannot_work_are_refused(changes, message):
  config = default_config()
  for key, value in changes.items():
    group, leaf = key.split(".")
    config[group][leaf] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(config)


def test_every_valid_combination_builds():
  dlns = [
    make_dln(_free_dln_config(item_kind, hidden=(4,), activation=activation))
    for item_kind in ("one_vs_rest", "one_vs_one")
    for activation in ("tanh", "leaky_relu")
  ]
  cfg = default_config().dln
  cfg.activation = "leaky_relu"  # our CE path + residual with the authors' activation
  ours = make_dln(cfg)

  @fast_jit
  def losses_and_our_params():
    phis = [dln.init(jax.random.PRNGKey(0)) for dln in dlns]
    losses = [dln.loss(phi, jnp.ones((2, 3)), jnp.array([0, 2])) for dln, phi in zip(dlns, phis)]
    return losses, ours.init(jax.random.PRNGKey(0))

  losses, phi = losses_and_our_params()
  for loss in losses:
    assert np.isfinite(loss)
  assert "skip" in phi


# --- the reference configs (needs_reunroll: they set the teacher-gradient keys) ----------------


@pytest.mark.parametrize("name", REFERENCE_CONFIGS)
def test_reference_config_holds_the_authors_settings(name):  # needs_reunroll
  from benchmarks.common import load_config

  config = validate(load_config(name))
  assert config.train.steps % 15 == 0 and config.train.batch_size == 25
  assert config.data.split == "redrawn_half" and config.dln.table_size == 0
  # The architectures' shapes (their initialisations are not computed).
  phi = jax.eval_shape(make_dln(config.dln).init, jax.random.PRNGKey(0))
  assert [phi[k]["kernel"].shape for k in sorted(phi)] == [
    (4, 40),
    (40, 40),
    (40, 40),
    (40, 40),
    (40, 1),
  ]
  theta = jax.eval_shape(make_teacher(config.teacher).init, jax.random.PRNGKey(0))
  assert [theta[f"lstm_{i}"]["hi"]["kernel"].shape[-1] for i in range(4)] == [64, 64, 64, 1]
  setting = name.removeprefix("reference_")
  if setting in cifar.SETTINGS:  # the student of configs/cifar.py:NAME on its dataset
    ours = cifar.get_config(setting)
    assert config.student.to_dict() == ours.student.to_dict()
    assert config.data.name == ours.data.name and config.data.augment


def test_paper_tables_smoke_runs_the_reference_row(tmp_path, capsys):  # needs_reunroll
  from benchmarks import paper_tables

  report = paper_tables.main(
    [
      "--smoke",
      "--configs=mnist1d_mlp",
      "--methods=l2t_dln_reference",
      f"--workdir={tmp_path}",
      "--quiet",
    ]
  )
  (run,) = report["runs"]
  assert run["method"] == "l2t_dln_reference" and run["student"] == "MLP"
  assert run["summary"]["student_steps"] == 4 and run["summary"]["meta_updates"] == 2
  assert "L2T-DLN, authors' protocol" in capsys.readouterr().out
  saved = json.loads((tmp_path / "paper_tables.json").read_text())
  assert saved["tables"]["mnist1d"]["rows"]["l2t_dln_reference"]["MLP"] == [run["test_error"]]
