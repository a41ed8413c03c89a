"""Student networks: flax modules behind one pure interface, built by name from the config."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import ml_collections

Params = Any
ModelState = Any  # non-trainable collections such as BatchNorm statistics ({} when none)


class Student(NamedTuple):
  """`init(rng, x) -> (params, model_state)`; `apply(params, model_state, x, train, rng=None) ->
  (logits, model_state)`. In training mode `apply` returns the updated model state; `rng` keys
  the student's randomness in training mode (Dropout), and is ignored by students without it."""

  init: Callable[[jax.Array, jax.Array], tuple[Params, ModelState]]
  apply: Callable[..., tuple[jax.Array, ModelState]]
  module: Any


def from_linen(module: nn.Module) -> Student:
  """Wraps a linen module whose `__call__(x, train)` returns logits."""

  def init(rng, x):
    variables = dict(module.init(rng, x, train=False))
    params = variables.pop("params")
    return params, variables

  def apply(params, model_state, x, train, rng=None):
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if train and rng is not None else None
    if train and model_state:
      logits, new_state = module.apply(
        variables, x, train=True, mutable=list(model_state), rngs=rngs
      )
      return logits, dict(new_state)
    return module.apply(variables, x, train=train, rngs=rngs), model_state

  return Student(init=init, apply=apply, module=module)


def from_nnx(make_model: Callable[[Any], Any]) -> Student:
  """Wraps a Flax NNX model, built by `make_model(rngs)` from an `nnx.Rngs`, whose `__call__(x)`
  returns logits and which `.train()` / `.eval()` switch (Dropout, BatchNorm). Its parameters
  (`nnx.Param`) and its other state (e.g. BatchNorm statistics) become plain dicts of arrays;
  its random streams are not state: in training every call draws from the `rng` it is given."""
  from flax import nnx

  def abstract():  # the model's structure without arrays, built afresh for every trace
    return nnx.split(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))), nnx.Param, nnx.RngState, ...)

  def init(rng, x):
    del x  # NNX models are built with their shapes
    _, params, _, rest = nnx.split(make_model(nnx.Rngs(rng)), nnx.Param, nnx.RngState, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

  def apply(params, model_state, x, train, rng=None):
    graphdef, params_t, rngs_t, rest_t = abstract()
    streams = jax.tree_util.tree_leaves(nnx.to_pure_dict(rngs_t))
    if train and streams and rng is None:
      raise ValueError(
        "this NNX student draws random numbers in training (e.g. Dropout): pass "
        "rng= to unroll / hypergradient (the driver always does)"
      )
    nnx.replace_by_pure_dict(params_t, params)
    nnx.replace_by_pure_dict(rest_t, model_state)
    nnx.replace_by_pure_dict(rngs_t, _fresh_streams(nnx.to_pure_dict(rngs_t), rng))
    model = nnx.merge(graphdef, params_t, rngs_t, rest_t)
    model.train() if train else model.eval()
    logits = model(x)
    if not train:
      return logits, model_state
    return logits, nnx.to_pure_dict(nnx.split(model, nnx.Param, nnx.RngState, ...)[3])

  return Student(init=init, apply=apply, module=make_model)


def _fresh_streams(template: Any, rng: jax.Array | None) -> Any:
  """Random-stream state (keys and counts, shaped as `template`) drawn from `rng`: stream i gets
  `fold_in(rng, i)` and a zero count. Without `rng` (evaluation), a fixed key that is not used."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  leaves, treedef = jax.tree_util.tree_flatten(template)
  fresh = []
  for i, leaf in enumerate(leaves):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      key = jax.random.fold_in(rng, i)
      typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
      fresh.append(key if typed else jax.random.wrap_key_data(key))
    else:
      fresh.append(jax.numpy.zeros(leaf.shape, leaf.dtype))
  return treedef.unflatten(fresh)


def _backbone(cfg: ml_collections.ConfigDict, blocks: tuple, width: int) -> dict:
  """`student.stage_blocks` and `student.base_width`, or the standard backbone's where unset."""
  return {"blocks": tuple(cfg.stage_blocks) or blocks, "width": cfg.base_width or width}


def build_student(
  cfg: ml_collections.ConfigDict, num_classes: int, axis_name: str | None = None
) -> Student:
  """The student named by `cfg.name`. `axis_name` is the device axis of a data-parallel run, over
  which BatchNorm averages its batch statistics (None on one device)."""
  from l2t_jax.students import cnn1d, deeplab, densenet, lenet, mlp, resnet, wide_resnet, yolo

  norm = dict(bn_momentum=cfg.bn_momentum, bn_epsilon=cfg.bn_epsilon, axis_name=axis_name)
  builders = {
    "mlp": lambda: mlp.MLP(hidden=tuple(cfg.hidden), num_classes=num_classes, dropout=cfg.dropout),
    "cnn1d": lambda: cnn1d.CNN1D(
      channels=tuple(cfg.channels), kernel_size=cfg.kernel_size, num_classes=num_classes
    ),
    "lenet5": lambda: lenet.LeNet5(num_classes=num_classes),
    "resnet": lambda: resnet.CIFARResNet(depth=cfg.depth, num_classes=num_classes, **norm),
    "wrn": lambda: wide_resnet.WideResNet(
      depth=cfg.depth, widen_factor=cfg.widen_factor, num_classes=num_classes, **norm
    ),
    "densenet": lambda: densenet.DenseNetBC(
      depth=cfg.depth, growth_rate=cfg.growth_rate, num_classes=num_classes, **norm
    ),
    "yolo": lambda: yolo.YOLOv3(
      num_classes=num_classes, **_backbone(cfg, yolo.DARKNET53_BLOCKS, yolo.DARKNET53_WIDTH), **norm
    ),
    "deeplab": lambda: deeplab.DeepLab(
      num_classes=num_classes,
      **_backbone(cfg, deeplab.RESNET18_BLOCKS, deeplab.RESNET_WIDTH),
      **norm,
    ),
  }
  if cfg.name not in builders:
    raise ValueError(f"student.name='{cfg.name}' is not a known student; known: {sorted(builders)}")
  return from_linen(builders[cfg.name]())
