"""The configuration schema: every key a run accepts, its default, and the checks on its values.

Experiment files in `configs/` start from `default_config()` and override values; `validate()`
refuses keys the schema does not know and values that cannot work, naming each and the fix.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
from types import ModuleType
from typing import Any, Iterable

import ml_collections

# The choices of the maths modules, named where they are implemented.
from l2t_jax.dln import DLN_ACTIVATIONS, DLN_FEATURES, DLN_ITEMS, DLN_NETWORKS
from l2t_jax.losses import VAL_OBJECTIVES
from l2t_jax.students.yolo import ANCHOR_SETS
from l2t_jax.teacher import TEACHER_NETWORKS
from l2t_jax.teaching import CONTINUATIONS, TEACHER_GRADIENTS
from l2t_jax.unroll import REMAT_POLICIES

METHODS = ("ce", "label_smoothing", "focal", "gce", "sce", "l2t_dlf", "l2t_dln")
META_METHODS = ("l2t_dlf", "l2t_dln")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "piecewise")
DATA_SPLITS = ("fixed", "redrawn_half")  # see data/sampler.py; redrawn_half is the authors'
DETECTION_DATASETS = ("shapes_detection", "voc_detection")  # boxes: the yolo student (tasks.py)
SEGMENTATION_DATASETS = ("shapes_segmentation", "voc_segmentation")  # masks: the deeplab student
DATASETS = (
  "mnist1d",
  "digits",
  "mnist",
  "fashion_mnist",
  "cifar10",
  "cifar100",
  *DETECTION_DATASETS,
  *SEGMENTATION_DATASETS,
)
DENSE_STUDENTS = {"yolo": DETECTION_DATASETS, "deeplab": SEGMENTATION_DATASETS}
DENSE_METHODS = ("ce", "l2t_dln")  # the methods a detection or segmentation student has
IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
IDX_DATASETS = ("mnist", "fashion_mnist")  # also readable from MNIST-format files (data/idx.py)
DATA_SOURCES = ("auto", "idx", "tfds")
NOISE_KINDS = ("symmetric", "pair")  # see data/dataset.py's label_noise
IMAGE_STUDENTS = ("lenet5", "resnet", "wrn", "densenet")
STUDENTS = ("mlp", "cnn1d", *IMAGE_STUDENTS, *DENSE_STUDENTS)
MAX_STEPS = 2**31 - 1  # the student step counts in int32 on the device


class ConfigError(ValueError):
  """A configuration that names unknown keys or holds values that cannot work."""


def config_file_module(path: str) -> ModuleType:
  """A config file as a module, loaded by its path (a config file's directory need not be
  importable; a config built on another loads that one from beside itself through this)."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def default_config() -> ml_collections.ConfigDict:
  """The full schema with its defaults: MNIST-1D, MLP student, L2T-DLN."""
  c = ml_collections.ConfigDict()
  c.method = "l2t_dln"
  c.seed = 0
  c.teacher_init = ""  # l2t_dln: a saved LSTM teacher (WORKDIR/teacher.msgpack of an earlier run)
  # to start from instead of a random one; its architecture must equal `teacher` below

  c.data = ml_collections.ConfigDict()
  c.data.name = "mnist1d"
  c.data.data_dir = ""  # TFDS datasets (empty: the TFDS default); voc_segmentation: the folder
  # holding VOCdevkit/; IDX files (empty: fashion_mnist, Debian's /usr/share/datasets/fashion-mnist)
  c.data.source = "auto"  # mnist, fashion_mnist: "idx" (MNIST-format files in data_dir), "tfds",
  # or "auto": IDX for fashion_mnist, TFDS for mnist
  c.data.split = "fixed"  # fixed: validation is the last val_size training examples; redrawn_half:
  # the training split halved at random into train / validation, re-drawn every epoch (the
  # authors'; val_size unused; methods without a validation split train on all of it)
  c.data.val_size = 500  # carved from the end of the (fixed-order) training split
  c.data.train_size = 0  # >0: keep only the first N training examples left after the carve-out
  c.data.mnist1d_seed = 42  # mnist1d: the package's generator seed (42, its default: the
  # canonical dataset); another seed generates other examples of the same problem
  c.data.label_noise = 0.0  # the fraction of training labels changed (fixed per seed)
  c.data.label_noise_kind = (
    "symmetric"  # symmetric: to a uniformly drawn other class; pair: c -> c+1
  )
  c.data.noisy_val = False  # True: the validation split gets the same noise (no clean data at all)
  c.data.use_val_for_training = False  # CE on train+val; needs a method without a validation split
  c.data.augment = False  # images: pad, random crop and horizontal flip, on the device;
  # detection and segmentation: random zoom (zoom_range), shift and flip of images, boxes, masks
  c.data.crop_padding = 4  # pixels of zero padding before the random crop
  c.data.image_size = 64  # shapes_*: the side of the generated scenes; voc_detection: images are
  # resized to it; voc_segmentation: the square canvas images are placed on (a multiple of 32)
  c.data.zoom_range = (0.5, 2.0)  # detection, segmentation with augment: the random zoom's bounds
  c.data.shapes_seed = 0  # shapes_*: the seed the scenes are generated from (not the run's seed,
  # so that runs with different seeds see the same scenes)
  c.data.shapes_train_size = 2000  # shapes_*: generated training scenes (validation carved off)
  c.data.shapes_test_size = 500  # shapes_*: generated test scenes

  c.student = ml_collections.ConfigDict()
  c.student.name = "mlp"
  c.student.hidden = (100, 100)
  c.student.dropout = 0.0  # mlp: Dropout rate after every hidden layer (keyed by seed and step)
  c.student.channels = (25, 25, 25)  # cnn1d
  c.student.kernel_size = 5  # cnn1d
  c.student.depth = 20  # resnet: 6n+2 (8, 20, 32, ...); wrn and densenet: 6n+4 (28; 100)
  c.student.widen_factor = 10  # wrn
  c.student.growth_rate = 12  # densenet
  c.student.bn_momentum = 0.9  # weight of the old running average in BatchNorm's update
  c.student.bn_epsilon = 1e-5
  c.student.stage_blocks = ()  # yolo, deeplab: residual blocks per backbone stage; empty: the
  # standard backbone (yolo: Darknet-53, (1, 2, 8, 8, 4); deeplab: ResNet-18, (2, 2, 2, 2))
  c.student.base_width = 0  # yolo, deeplab: maps of the backbone's first stage; 0: the standard
  # (Darknet-53: 32; ResNet-18: 64)
  c.student.anchors = "coco"  # yolo: YOLO-v3's nine standard anchors ("coco"), or nine fitted by
  # k-means to the training split's boxes ("kmeans", YOLO-v3's own method; students.yolo.fit_anchors)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 0.0
  c.optim.schedule = "constant"
  c.optim.boundaries = ()  # piecewise: student steps where the rate is multiplied by decay_factor
  c.optim.decay_factor = 0.1
  c.optim.warmup_steps = 0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 6000
  c.train.batch_size = 128
  c.train.eval_every = 500
  c.train.log_every = 500
  c.train.eval_batch_size = 1000
  # True: the training cycle is compiled with XLA's backend optimisations off
  # (l2t_jax.parallel.FAST_COMPILER_OPTIONS): on a CPU the L2T-DLN cycle compiles about twice as fast
  # and runs 2-3 times slower. For short runs (smoke runs, tests, debugging), not for training.
  c.train.fast_compile = False
  # True: metrics.jsonl's records also as TensorBoard event files in WORKDIR/tensorboard
  # (`tensorboard --logdir WORKDIR`); needs tensorboardX: pip install 'l2t_jax[tensorboard]'
  c.train.tensorboard = False

  c.loss = ml_collections.ConfigDict()
  c.loss.label_smoothing = 0.1
  c.loss.focal_gamma = 2.0
  c.loss.gce_q = 0.7  # generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q) / q
  c.loss.sce_alpha = 0.1  # symmetric cross-entropy (Wang et al. 2019): alpha CE + beta reverse CE
  c.loss.sce_beta = 1.0

  c.meta = ml_collections.ConfigDict()
  c.meta.unroll_steps = 10  # K: student steps differentiated for one hypergradient
  c.meta.interval = 10  # student steps between loss updates (>= K); the first K are unrolled
  c.meta.teacher_every = 5  # M: loss updates per teacher update (teacher.gradient: window, its
  # truncated BPTT window; reunroll, how many one-step gradients are averaged)
  c.meta.val_batch_size = 0  # 0: the whole validation split each segment
  c.meta.val_objective = "ce"  # ce, smooth_error (L2T-DLF's), scale_free_ce (see losses.py)
  c.meta.smooth_error_k = 5.0
  c.meta.scale_free_temperature = 0.3  # scale_free_ce: CE of the standardised logits / this
  c.meta.remat = "none"  # memory policy of the differentiated unroll: none, step, dots, sqrt
  c.meta.continue_from = "unroll"  # l2t_dln: the student continues from the segment unrolled on
  # phi ("unroll"), or, with teacher.gradient="reunroll", from its re-run on the teacher's
  # proposal phi' ("reunroll", the authors'); the DLN is phi' either way

  c.dln = ml_collections.ConfigDict()
  c.dln.item_kind = "one_vs_rest"  # one_vs_rest: (p_c, y_c) per class; one_vs_one: the authors'
  # (sigmoid(z_y), sigmoid(z_c), 1, 0) per wrong class, the loss the mean over all items. (Not
  # named `items`: that is a ConfigDict method, which attribute access and --config overrides hit)
  c.dln.network = "ce_residual"  # ce_residual: cross-entropy path + zero-init residual MLP;
  # free: a bias-free MLP, He-normal (fan-out) init, no cross-entropy path (the authors')
  c.dln.features = ("log_p", "y", "y_log_p", "log_1mp")  # one_vs_rest items only
  c.dln.hidden = (16, 16)
  c.dln.activation = "tanh"  # of the hidden layers: tanh or leaky_relu (slope 0.01)
  c.dln.skip_init = 1.0  # ce_residual: weight of the cross-entropy skip path at init
  c.dln.slope_bound = (
    0.0  # >0 (table only): item slopes within [0, this x binary CE's], see dln_table
  )
  c.dln.slope_floor = 0.0  # with slope_bound: every item keeps at least this x binary CE's slope
  c.dln.curvature_bound = 0.0  # >0 (with slope_bound): no item's slope rises faster than this per
  # unit of item logit (binary CE's: 1/4); where the teacher's clamps switch a push on more sharply,
  # the table damps it into a ramp (dln_table._smooth_damping)
  c.dln.learn_scale = False  # a learned log-scale of the whole loss (starts at 0: scale 1)
  c.dln.log_clip = 20.0  # log-probabilities fed to the MLP are clipped at -log_clip
  c.dln.table_size = 256  # >0: tabulate the DLN once per segment at this many knots (dln_table.py;
  # at 256 it is as close to the exact DLN as at 512, within float32 rounding: test_dln_table.py)

  c.teacher = ml_collections.ConfigDict()
  c.teacher.network = "lstm_readout"  # lstm_readout: `layers` LSTM cells of `hidden` units, then
  # a linear readout; stacked_cells: `layers` cells whose last has 1 unit and is the output
  # (the authors': hidden=64, layers=4 is 2-64-64-64-1)
  c.teacher.hidden = 20
  c.teacher.layers = 2
  c.teacher.output_scale = 1e-3  # 0: the DLN stays where it starts (the no-teaching control)
  c.teacher.preprocess_p = 10.0
  c.teacher.state_features = True  # progress, train loss, val loss, val accuracy
  c.teacher.learning_rate = 1e-3  # 0: a frozen teacher (with teacher_init: teaches, never learns)
  c.teacher.grad_clip = 1.0  # global norm of the teacher's gradient; 0 disables
  c.teacher.adam_eps = 1e-8  # Adam's eps: above the teacher gradients' scale, weak evidence
  # (a small validation gradient) moves the teacher less than strong evidence does
  c.teacher.gradient = "window"  # l2t_dln. window: first-order truncated BPTT over M =
  # meta.teacher_every DLN updates (LSTMTeacher.surrogate_loss). reunroll (the authors'): the exact
  # gradient of the validation loss after the same K steps re-run from the same start on the
  # proposed phi' = phi + T(g), second order through the student; a teacher step every M of them
  # (their mean; M = 1 is the authors')

  c.dlf = ml_collections.ConfigDict()
  c.dlf.hidden = (32,)
  c.dlf.learning_rate = 1e-4
  c.dlf.grad_clip = 1.0

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 0  # student steps between orbax checkpoints in the workdir; 0: none. When
  # > 0, a run also saves at its end and on SIGTERM, and resumes from the workdir's latest one.
  c.checkpoint.keep = 2  # how many of the latest checkpoints are kept

  c.parallel = ml_collections.ConfigDict()
  c.parallel.devices = 1  # local devices the batch is split over; 0: all of them
  c.parallel.distributed = False  # multi-host: call jax.distributed.initialize() first
  c.parallel.coordinator_address = ""  # jax.distributed.initialize's arguments; empty / 0 / -1:
  c.parallel.num_processes = 0  # detected from the cluster environment (SLURM, Open MPI, TPU)
  c.parallel.process_id = -1
  return c


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in cfg.items():
    name = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def _refuse_unknown(cfg: ml_collections.ConfigDict, schema: ml_collections.ConfigDict) -> None:
  known = _flatten(schema)
  problems = []
  for key in _flatten(cfg):
    if key in known:
      continue
    hint = difflib.get_close_matches(key, list(known), n=1)
    fix = f" (did you mean '{hint[0]}'?)" if hint else ""
    problems.append(f"unknown config key '{key}'{fix}")
  if problems:
    raise ConfigError(
      "; ".join(problems)
      + ". Every key must exist in l2t_jax.config.default_config(); remove or rename it."
    )


def _check(problems: list[str], ok: bool, message: str) -> None:
  if not ok:
    problems.append(message)


def _positive_ints(values: Iterable[Any]) -> bool:
  return all(isinstance(v, int) and v > 0 for v in values)


def _non_finite(cfg: ml_collections.ConfigDict) -> list[str]:
  """A problem for every key holding NaN or an infinity (alone or in a tuple)."""
  problems = []
  for key, value in _flatten(cfg).items():
    items = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
      problems.append(f"{key}={value} must be finite")
  return problems


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns `cfg` unchanged, or raises ConfigError naming every unknown key and bad value."""
  _refuse_unknown(cfg, default_config())
  p: list[str] = _non_finite(cfg)
  _check(p, cfg.method in METHODS, f"method='{cfg.method}' is not one of {METHODS}")
  _check(p, isinstance(cfg.seed, int) and cfg.seed >= 0, f"seed={cfg.seed} must be an int >= 0")
  d = cfg.data
  _check(p, d.name in DATASETS, f"data.name='{d.name}' is not one of {DATASETS}")
  _check(p, d.val_size >= 0, f"data.val_size={d.val_size} must be >= 0")
  _check(
    p,
    isinstance(d.train_size, int) and d.train_size >= 0,
    f"data.train_size={d.train_size} must be an int >= 0 (0: every training example)",
  )
  _check(
    p,
    isinstance(d.mnist1d_seed, int) and 0 <= d.mnist1d_seed < 2**32,
    f"data.mnist1d_seed={d.mnist1d_seed} must be an int in [0, 2**32) (numpy's seed range)",
  )
  _check(
    p,
    d.name == "mnist1d" or d.mnist1d_seed == default_config().data.mnist1d_seed,
    f"data.mnist1d_seed={d.mnist1d_seed} generates MNIST-1D, not data.name='{d.name}': "
    "leave it at its default or set data.name='mnist1d'",
  )
  augmentable = IMAGE_DATASETS + DETECTION_DATASETS + SEGMENTATION_DATASETS
  _check(
    p,
    not d.augment or d.name in augmentable,
    f"data.augment=True needs images: data.name one of {augmentable}, not '{d.name}'",
  )
  _check(
    p,
    isinstance(d.crop_padding, int) and d.crop_padding >= 0,
    f"data.crop_padding={d.crop_padding} must be an int >= 0",
  )
  _check(p, 0.0 <= d.label_noise < 1.0, f"data.label_noise={d.label_noise} must lie in [0, 1)")
  _check(
    p,
    d.label_noise_kind in NOISE_KINDS,
    f"data.label_noise_kind='{d.label_noise_kind}' is not one of {NOISE_KINDS}",
  )
  _check(
    p,
    not d.noisy_val or d.label_noise > 0,
    "data.noisy_val=True puts the training split's label noise on the validation split, but "
    "data.label_noise=0: set a noise rate or leave data.noisy_val=False",
  )
  _check(p, d.source in DATA_SOURCES, f"data.source='{d.source}' is not one of {DATA_SOURCES}")
  _check(
    p,
    d.source == "auto" or d.name in IDX_DATASETS,
    f"data.source='{d.source}' chooses how {IDX_DATASETS} are read, not data.name='{d.name}': "
    "leave it at 'auto'",
  )
  _check_dense(p, cfg)
  _check(p, d.split in DATA_SPLITS, f"data.split='{d.split}' is not one of {DATA_SPLITS}")
  _check(
    p,
    d.split != "redrawn_half" or not d.use_val_for_training,
    "data.split='redrawn_half' already trains methods without a validation split on the whole "
    "training split: set data.use_val_for_training=False",
  )
  if cfg.method in META_METHODS:
    _check(
      p,
      d.val_size > 0 or d.split == "redrawn_half",
      f"method='{cfg.method}' learns from a validation split: set data.val_size > 0",
    )
    _check(
      p,
      not d.use_val_for_training,
      "data.use_val_for_training=True leaves no validation data for "
      f"method='{cfg.method}': use it with a fixed loss (ce, label_smoothing, focal, gce, sce)",
    )
  _check(
    p,
    not cfg.teacher_init or cfg.method == "l2t_dln",
    f"teacher_init='{cfg.teacher_init}' starts an LSTM teacher, which only method='l2t_dln' "
    f"has, not method='{cfg.method}': set teacher_init='' or method='l2t_dln'",
  )
  _check_student(p, cfg)
  o = cfg.optim
  _check(p, o.name in OPTIMIZERS, f"optim.name='{o.name}' is not one of {OPTIMIZERS}")
  _check(p, o.learning_rate > 0, f"optim.learning_rate={o.learning_rate} must be > 0")
  _check(p, 0 <= o.momentum < 1, f"optim.momentum={o.momentum} must lie in [0, 1)")
  _check(p, o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be >= 0")
  _check(p, o.schedule in SCHEDULES, f"optim.schedule='{o.schedule}' is not one of {SCHEDULES}")
  _check(
    p,
    list(o.boundaries) == sorted(o.boundaries) and _positive_ints(o.boundaries),
    f"optim.boundaries={tuple(o.boundaries)} must be increasing positive step counts",
  )
  _check(p, 0 <= o.warmup_steps, f"optim.warmup_steps={o.warmup_steps} must be >= 0")
  _check(
    p,
    o.decay_factor > 0,
    f"optim.decay_factor={o.decay_factor} must be > 0 (the factor "
    "the rate is multiplied by at each of optim.boundaries)",
  )
  t = cfg.train
  _check(
    p,
    _positive_ints([t.steps, t.batch_size, t.eval_every, t.log_every, t.eval_batch_size]),
    "train.steps, train.batch_size, train.eval_every, train.log_every and "
    "train.eval_batch_size must be positive ints",
  )
  _check(
    p,
    not isinstance(t.steps, int) or t.steps <= MAX_STEPS,
    f"train.steps={t.steps} must be at most {MAX_STEPS} (the step counter is an int32)",
  )
  _check(
    p, isinstance(t.tensorboard, bool), f"train.tensorboard={t.tensorboard!r} must be True or False"
  )
  m = cfg.meta
  _check(
    p,
    _positive_ints([m.unroll_steps, m.interval, m.teacher_every]),
    "meta.unroll_steps, meta.interval and meta.teacher_every must be positive ints",
  )
  _check(
    p,
    m.unroll_steps <= m.interval,
    f"meta.unroll_steps={m.unroll_steps} must be <= meta.interval={m.interval}",
  )
  _check(
    p,
    t.steps % m.interval == 0,
    f"train.steps={t.steps} must be a multiple of meta.interval={m.interval} "
    "(every method runs in cycles of meta.interval student steps)",
  )
  _check(p, m.val_batch_size >= 0, f"meta.val_batch_size={m.val_batch_size} must be >= 0")
  _check(p, m.remat in REMAT_POLICIES, f"meta.remat='{m.remat}' is not one of {REMAT_POLICIES}")
  _check(
    p,
    cfg.teacher.gradient in TEACHER_GRADIENTS,
    f"teacher.gradient='{cfg.teacher.gradient}' is not one of {TEACHER_GRADIENTS}",
  )
  _check(
    p,
    m.continue_from in CONTINUATIONS,
    f"meta.continue_from='{m.continue_from}' is not one of {CONTINUATIONS}",
  )
  _check(
    p,
    m.continue_from != "reunroll" or cfg.teacher.gradient == "reunroll",
    "meta.continue_from='reunroll' continues from the second unroll, which only "
    "teacher.gradient='reunroll' runs: set teacher.gradient='reunroll' or "
    "meta.continue_from='unroll'",
  )
  _check(
    p,
    m.val_objective in VAL_OBJECTIVES,
    f"meta.val_objective='{m.val_objective}' is not one of {VAL_OBJECTIVES}",
  )
  _check(
    p,
    m.scale_free_temperature > 0,
    f"meta.scale_free_temperature={m.scale_free_temperature} must be > 0",
  )
  _check_dln(p, cfg.dln)
  _check(
    p,
    set(cfg.dln.features) <= set(DLN_FEATURES) and len(cfg.dln.features) > 0,
    f"dln.features={tuple(cfg.dln.features)} must be a non-empty subset of {DLN_FEATURES}",
  )
  _check(
    p, _positive_ints(cfg.dln.hidden), f"dln.hidden={tuple(cfg.dln.hidden)} must be positive ints"
  )
  _check(
    p,
    cfg.dln.table_size == 0 or cfg.dln.table_size >= 16,
    f"dln.table_size={cfg.dln.table_size} must be 0 (exact DLN) or at least 16 knots",
  )
  _check(p, cfg.dln.log_clip > 0, f"dln.log_clip={cfg.dln.log_clip} must be > 0")
  _check(
    p,
    cfg.dln.slope_bound == 0 or cfg.dln.slope_bound >= 1,
    f"dln.slope_bound={cfg.dln.slope_bound} must be 0 (unbounded) or >= 1 (a bound below 1 "
    "would clip cross-entropy itself, where the DLN starts)",
  )
  _check(
    p,
    not cfg.dln.slope_bound or cfg.dln.table_size,
    f"dln.slope_bound={cfg.dln.slope_bound} bounds the tabulated DLN: set dln.table_size > 0 "
    "(e.g. 512) or dln.slope_bound=0",
  )
  _check(
    p,
    0 <= cfg.dln.slope_floor <= 1 and (not cfg.dln.slope_floor or cfg.dln.slope_bound),
    f"dln.slope_floor={cfg.dln.slope_floor} must lie in [0, 1] (cross-entropy itself, where "
    "the DLN starts, keeps slope 1) and needs dln.slope_bound >= 1",
  )
  _check(
    p,
    cfg.dln.curvature_bound >= 0 and (not cfg.dln.curvature_bound or cfg.dln.slope_bound),
    f"dln.curvature_bound={cfg.dln.curvature_bound} must be >= 0 and acts on the bounded table: "
    "set dln.slope_bound > 0 or dln.curvature_bound=0",
  )
  tc = cfg.teacher
  _check(
    p,
    tc.network in TEACHER_NETWORKS,
    f"teacher.network='{tc.network}' is not one of {TEACHER_NETWORKS}",
  )
  _check(
    p,
    _positive_ints([tc.hidden, tc.layers]),
    "teacher.hidden and teacher.layers must be positive ints",
  )
  _check(p, tc.output_scale >= 0, f"teacher.output_scale={tc.output_scale} must be >= 0")
  _check(p, tc.preprocess_p > 0, f"teacher.preprocess_p={tc.preprocess_p} must be > 0")
  _check(p, tc.learning_rate >= 0, f"teacher.learning_rate={tc.learning_rate} must be >= 0")
  _check(p, tc.adam_eps > 0, f"teacher.adam_eps={tc.adam_eps} must be > 0")
  _check(
    p, _positive_ints(cfg.dlf.hidden), f"dlf.hidden={tuple(cfg.dlf.hidden)} must be positive ints"
  )
  _check(
    p,
    0 <= cfg.loss.label_smoothing < 1,
    f"loss.label_smoothing={cfg.loss.label_smoothing} must lie in [0, 1)",
  )
  _check(p, 0 < cfg.loss.gce_q <= 1, f"loss.gce_q={cfg.loss.gce_q} must lie in (0, 1]")
  _check(
    p,
    cfg.loss.sce_alpha >= 0
    and cfg.loss.sce_beta >= 0
    and cfg.loss.sce_alpha + cfg.loss.sce_beta > 0,
    f"loss.sce_alpha={cfg.loss.sce_alpha} and loss.sce_beta={cfg.loss.sce_beta} must be >= 0, "
    "not both 0",
  )
  ck = cfg.checkpoint
  _check(
    p,
    isinstance(ck.every, int) and ck.every >= 0 and ck.every % m.interval == 0,
    f"checkpoint.every={ck.every} must be 0 (no checkpoints) or a positive multiple of "
    f"meta.interval={m.interval} (checkpoints are taken between cycles)",
  )
  _check(p, _positive_ints([ck.keep]), f"checkpoint.keep={ck.keep} must be a positive int")
  pa = cfg.parallel
  _check(
    p,
    isinstance(pa.devices, int) and pa.devices >= 0,
    f"parallel.devices={pa.devices} must be an int >= 0 (0: all local devices)",
  )
  if p:
    raise ConfigError("invalid config: " + "; ".join(p))
  return cfg


def _check_dln(p: list[str], dln: ml_collections.ConfigDict) -> None:
  """The DLN's item kind, network and activation, and which of them go together."""
  _check(
    p, dln.item_kind in DLN_ITEMS, f"dln.item_kind='{dln.item_kind}' is not one of {DLN_ITEMS}"
  )
  _check(
    p, dln.network in DLN_NETWORKS, f"dln.network='{dln.network}' is not one of {DLN_NETWORKS}"
  )
  _check(
    p,
    dln.activation in DLN_ACTIVATIONS,
    f"dln.activation='{dln.activation}' is not one of {DLN_ACTIVATIONS}",
  )
  if dln.item_kind != "one_vs_one":
    return
  _check(
    p,
    dln.network == "free",
    "dln.network='ce_residual' adds a cross-entropy path to one-vs-rest items (p_c, y_c) and "
    "cannot score dln.item_kind='one_vs_one' pairs: set dln.network='free' or "
    "dln.item_kind='one_vs_rest'",
  )
  _check(
    p,
    not dln.table_size,
    f"dln.table_size={dln.table_size}: the table (dln_table.py) holds functions of one "
    "probability, but a dln.item_kind='one_vs_one' item depends on two (sigmoid(z_y), "
    "sigmoid(z_c)): set dln.table_size=0 (and dln.slope_bound=0)",
  )


def _check_dense(p: list[str], cfg: ml_collections.ConfigDict) -> None:
  """Detection and segmentation datasets: their student, methods and settings."""
  d, s = cfg.data, cfg.student
  dense = d.name in DETECTION_DATASETS + SEGMENTATION_DATASETS
  _check(
    p,
    isinstance(d.image_size, int) and d.image_size >= 32 and d.image_size % 32 == 0,
    f"data.image_size={d.image_size} must be a multiple of 32 (YOLO-v3's coarsest stride)",
  )
  _check(
    p,
    isinstance(d.shapes_seed, int) and d.shapes_seed >= 0,
    f"data.shapes_seed={d.shapes_seed} must be an int >= 0",
  )
  _check(
    p,
    _positive_ints([d.shapes_train_size, d.shapes_test_size]),
    "data.shapes_train_size and data.shapes_test_size must be positive ints",
  )
  _check(
    p,
    _positive_ints(s.stage_blocks) and isinstance(s.base_width, int) and s.base_width >= 0,
    f"student.stage_blocks={tuple(s.stage_blocks)} must be positive ints and "
    f"student.base_width={s.base_width} an int >= 0",
  )
  _check(
    p,
    s.anchors in ANCHOR_SETS,
    f"student.anchors='{s.anchors}' is not one of {ANCHOR_SETS}",
  )
  if s.name in DENSE_STUDENTS:
    _check(
      p,
      d.name in DENSE_STUDENTS[s.name],
      f"student.name='{s.name}' needs data.name one of {DENSE_STUDENTS[s.name]}, not '{d.name}'",
    )
  elif dense:
    wanted = "yolo" if d.name in DETECTION_DATASETS else "deeplab"
    p.append(f"data.name='{d.name}' is taught to student.name='{wanted}', not '{s.name}'")
  if not dense:
    return
  _check(
    p,
    cfg.method in DENSE_METHODS,
    f"method='{cfg.method}' is a classification loss; data.name='{d.name}' has the methods "
    f"{DENSE_METHODS}",
  )
  _check(
    p,
    cfg.meta.val_objective == "ce",
    f"meta.val_objective='{cfg.meta.val_objective}': on data.name='{d.name}' the teacher "
    "minimises the task's standard loss on validation data; set meta.val_objective='ce'",
  )
  _check(
    p,
    not d.label_noise,
    f"data.label_noise is for classification; set it to 0 for data.name='{d.name}'",
  )
  zoom = tuple(d.zoom_range)
  _check(
    p,
    len(zoom) == 2 and 0 < zoom[0] <= zoom[1],
    f"data.zoom_range={zoom} must be two zoom factors 0 < low <= high (1: no zoom)",
  )


def _check_student(p: list[str], cfg: ml_collections.ConfigDict) -> None:
  s = cfg.student
  if s.name not in STUDENTS:
    p.append(f"student.name='{s.name}' is not one of {STUDENTS}")
    return
  _check(
    p,
    s.name not in IMAGE_STUDENTS or cfg.data.name in IMAGE_DATASETS,
    f"student.name='{s.name}' needs images: data.name one of {IMAGE_DATASETS}, "
    f"not '{cfg.data.name}'",
  )
  _check(
    p,
    _positive_ints([s.depth, s.widen_factor, s.growth_rate, s.kernel_size]),
    "student.depth, student.widen_factor, student.growth_rate and student.kernel_size must be "
    "positive ints",
  )
  _check(
    p,
    _positive_ints(s.hidden),
    f"student.hidden={tuple(s.hidden)} must be positive ints "
    "(the widths of the MLP's hidden layers)",
  )
  _check(
    p,
    0 <= s.dropout < 1 and (not s.dropout or s.name == "mlp"),
    f"student.dropout={s.dropout} must lie in [0, 1) and is an option of the mlp student only "
    f"(student.name='{s.name}')",
  )
  _check(
    p,
    _positive_ints(s.channels),
    f"student.channels={tuple(s.channels)} must be positive ints (the CNN1D's channels per layer)",
  )
  _check(p, 0 < s.bn_momentum < 1, f"student.bn_momentum={s.bn_momentum} must lie in (0, 1)")
  _check(p, s.bn_epsilon > 0, f"student.bn_epsilon={s.bn_epsilon} must be > 0")
  if s.name in ("resnet", "wrn", "densenet") and isinstance(s.depth, int):
    from l2t_jax.students import densenet, resnet, wide_resnet

    rule = {
      "resnet": resnet.depth_to_blocks,
      "wrn": wide_resnet.depth_to_blocks,
      "densenet": densenet.depth_to_layers,
    }[s.name]
    try:
      rule(s.depth)
    except ValueError as e:
      p.append(str(e))
