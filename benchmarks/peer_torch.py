"""A PyTorch peer of our meta-segment, for benchmarks/speed.py: the same computation written the way
a PyTorch user would, timed in the same process as ours.

Two ways to differentiate through the K unrolled student steps:
- `func`: `torch.func` (functional_call of the student, `torch.func.grad` nested through the
  unroll), the idiom of a TorchOpt / functorch rewrite;
- `higher`: the `higher` library's differentiable optimizer (`innerloop_ctx`), the authors' choice.

What is computed is read from one of our configs (`Setting.from_config`): the student MLP, its SGD
(with or without momentum), batch, K, the validation batch and objective (CE, or CE after a
temperature fitted on the batch), the DLN (its items, network, width, skip path and scale), and
the LSTM teacher (network, width, student-state features, output scale), so that a row compares
the same meta-segment. The DLN is evaluated item by item at every step, as the authors' code does
(our table, `dln.table_size`, is this library's own device). Two protocols:
- `window` (our default): per segment the hypergradient, the teacher's step on it, and every M
  segments the teacher's Adam step on the window's surrogate (truncated BPTT over M steps);
- `reunroll` (the authors'): the hypergradient, the teacher's proposal, a second unroll of the same
  batches from the same start on the proposal, its validation loss differentiated into the
  teacher (second order through the student), an Adam step; the student continues from the second
  unroll.
Install with `pip install -e '.[peer]'` (torch, higher); without torch the speed benchmark says
so and leaves these rows out.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import numpy as np

MODES = ("ce", "func", "higher")
LOG_P_CAP = -1e-6  # l2t_jax.dln.LOG_P_CAP: log(1 - p) from log p capped just below 0
LEAKY_RELU_SLOPE = 0.01


def unavailable(mode: str = "func") -> str | None:
  """Why the peer cannot run in `mode` here (None when it can)."""
  try:
    import torch  # noqa: F401
  except ImportError as e:
    return f"torch is not installed ({e}); pip install -e '.[peer]'"
  if mode == "higher":
    try:
      import higher  # noqa: F401
    except ImportError as e:
      return f"higher is not installed ({e}); pip install -e '.[peer]'"
  return None


def versions() -> dict:
  """The installed torch and higher versions (None when missing)."""
  from importlib import metadata

  out = {}
  for name in ("torch", "higher"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


@dataclasses.dataclass(frozen=True)
class Setting:
  """Everything the peer computes, read from one of our configs."""

  input_dim: int
  num_classes: int
  hidden: tuple[int, ...]
  learning_rate: float
  momentum: float
  batch_size: int
  val_batch_size: int
  unroll_steps: int
  teacher_every: int
  val_objective: str  # ce or calibrated_ce
  item_kind: str  # one_vs_rest or one_vs_one
  dln_network: str  # ce_residual or free
  dln_features: tuple[str, ...]
  dln_hidden: tuple[int, ...]
  dln_activation: str
  skip_init: float
  learn_scale: bool
  log_clip: float
  teacher_network: str  # lstm_readout or stacked_cells
  teacher_hidden: int
  teacher_layers: int
  state_features: bool
  output_scale: float
  preprocess_p: float
  teacher_learning_rate: float
  grad_clip: float
  gradient: str  # window or reunroll

  @classmethod
  def from_config(cls, config, input_dim: int, num_classes: int, val_batch_size: int) -> "Setting":
    c = config
    return cls(
      input_dim=input_dim,
      num_classes=num_classes,
      hidden=tuple(c.student.hidden),
      learning_rate=float(c.optim.learning_rate),
      momentum=float(c.optim.momentum),
      batch_size=c.train.batch_size,
      val_batch_size=val_batch_size,
      unroll_steps=c.meta.unroll_steps,
      teacher_every=c.meta.teacher_every,
      val_objective=c.meta.val_objective,
      item_kind=c.dln.item_kind,
      dln_network=c.dln.network,
      dln_features=tuple(c.dln.features),
      dln_hidden=tuple(c.dln.hidden),
      dln_activation=c.dln.activation,
      skip_init=float(c.dln.skip_init),
      learn_scale=bool(c.dln.learn_scale),
      log_clip=float(c.dln.log_clip),
      teacher_network=c.teacher.network,
      teacher_hidden=c.teacher.hidden,
      teacher_layers=c.teacher.layers,
      state_features=bool(c.teacher.state_features),
      output_scale=float(c.teacher.output_scale),
      preprocess_p=float(c.teacher.preprocess_p),
      teacher_learning_rate=float(c.teacher.learning_rate),
      grad_clip=float(c.teacher.grad_clip),
      gradient=c.teacher.gradient,
    )


def _student(s: Setting):
  import torch

  layers, width = [], s.input_dim
  for h in s.hidden:
    layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
    width = h
  return torch.nn.Sequential(torch.nn.Flatten(), *layers, torch.nn.Linear(width, s.num_classes))


def init_dln(s: Setting, generator) -> dict:
  """DLN parameters as `l2t_jax.dln` lays them out: ce_residual, a zero output layer behind the
  cross-entropy skip path; free, bias-free He-normal (fan-out) layers."""
  import torch

  phi, width = {}, len(s.dln_features) if s.item_kind == "one_vs_rest" else 4
  free = s.dln_network == "free"
  for i, h in enumerate(s.dln_hidden):
    std = math.sqrt(2.0 / h) if free else math.sqrt(1.0 / width)
    phi[f"w{i}"] = torch.randn(width, h, generator=generator) * std
    if not free:
      phi[f"b{i}"] = torch.zeros(h)
    width = h
  phi["w_out"] = (
    torch.randn(width, 1, generator=generator) * math.sqrt(2.0) if free else torch.zeros(width, 1)
  )
  if not free:
    phi["b_out"] = torch.zeros(1)
    phi["skip"] = torch.tensor(s.skip_init)
  if s.learn_scale:
    phi["log_scale"] = torch.zeros(())
  return phi


def _item_features(s: Setting, log_p, y):
  import torch

  clipped = log_p.clamp(-s.log_clip, 0.0)
  table = {
    "log_p": lambda: clipped,
    "p": lambda: log_p.exp(),
    "y": lambda: y,
    "y_log_p": lambda: y * clipped,
    "log_1mp": lambda: torch.log1p(-log_p.clamp(max=LOG_P_CAP).exp()).clamp(-s.log_clip, 0.0),
  }
  return torch.stack([table[n]() for n in s.dln_features], -1)


def dln_loss(s: Setting, phi: dict, logits, y):
  """The DLN loss of `l2t_jax.dln.DLN.loss` on logits and one-hot targets `y`, every item
  evaluated by the network."""
  import torch

  act = (
    torch.tanh
    if s.dln_activation == "tanh"
    else (lambda x: torch.nn.functional.leaky_relu(x, LEAKY_RELU_SLOPE))
  )
  if s.item_kind == "one_vs_one":
    p = torch.sigmoid(logits)
    wrong = 1.0 - y
    p_true = (p * y).sum(-1, keepdim=True)
    h = torch.stack([p_true * wrong, p * wrong, wrong, torch.zeros_like(p)], -1)
  else:
    log_p = torch.log_softmax(logits, -1)
    h = _item_features(s, log_p, y)
  for i in range(len(s.dln_hidden)):
    h = h @ phi[f"w{i}"]
    h = act(h + phi[f"b{i}"] if f"b{i}" in phi else h)
  value = (h @ phi["w_out"])[..., 0]
  if "b_out" in phi:
    value = value + phi["b_out"][0]
  if "skip" in phi:
    value = phi["skip"] * (-y * log_p) + value
  if "log_scale" in phi:
    value = phi["log_scale"].exp() * value
  return value.mean() if s.item_kind == "one_vs_one" else value.sum(-1).mean()


def val_objective(s: Setting, logits, labels, newton_steps: int = 10):
  """Validation CE, or with `calibrated_ce` CE after the inverse temperature that minimises it on
  the batch (Newton's method from 1, steps clipped to halving or doubling; no gradient through
  it), as `l2t_jax.losses.calibrated_ce`."""
  import torch

  ce = torch.nn.functional.cross_entropy
  if s.val_objective == "ce":
    return ce(logits, labels)
  z = logits.detach()
  z_y = z.gather(-1, labels[:, None])[:, 0]
  b = torch.ones(())
  for _ in range(newton_steps):
    p = torch.softmax(b * z, -1)
    mean_z = (p * z).sum(-1)
    slope = (mean_z - z_y).mean()
    curvature = ((p * z * z).sum(-1) - mean_z**2).mean()
    b = torch.clamp(b - slope / curvature.clamp(min=1e-12), 0.5 * b, 2.0 * b)
  return ce(b * logits, labels)


def preprocess(g, p: float):
  """`l2t_jax.teacher.preprocess_gradient`: `(log|g|/p, sign g)` or `(-1, e^p g)`."""
  import torch

  big = g.abs() >= math.exp(-p)
  first = torch.where(big, g.abs().clamp(min=1e-30).log() / p, -torch.ones_like(g))
  second = torch.where(big, g.sign(), math.exp(p) * g)
  return torch.stack([first, second], -1)


class Teacher:
  """The coordinate-wise LSTM teacher: `layers` LSTM cells (lstm_readout: of `hidden` units and a
  linear readout; stacked_cells: the last of one unit, its output the teacher's)."""

  def __init__(self, s: Setting):
    import torch

    widths = [s.teacher_hidden] * s.teacher_layers
    if s.teacher_network == "stacked_cells":
      widths[-1] = 1
    self.s, self.widths = s, widths
    cells, width = [], 2 + (4 if s.state_features else 0)
    for w in widths:
      cells.append(torch.nn.LSTMCell(width, w))
      width = w
    modules = cells + ([torch.nn.Linear(width, 1)] if s.teacher_network == "lstm_readout" else [])
    self.module = torch.nn.ModuleList(modules)

  def zero_memory(self, n: int):
    import torch

    return [(torch.zeros(n, w), torch.zeros(n, w)) for w in self.widths]

  def __call__(self, g, features, memory, params=None):
    """`(update, memory)` for the flat DLN gradient `g`; `params` runs the cells functionally."""
    import torch

    x = preprocess(g, self.s.preprocess_p)
    if self.s.state_features:
      x = torch.cat([x, features.expand(g.shape[0], 4)], -1)
    call = (
      (lambda m, *a: m(*a))
      if params is None
      else (lambda m, *a: torch.func.functional_call(m, params[id(m)], a))
    )
    new_memory, h = [], x
    for cell, state in zip(self.module[: len(self.widths)], memory):
      hc = call(cell, h, state)
      new_memory.append(hc)
      h = hc[0]
    if len(self.module) > len(self.widths):
      h = call(self.module[-1], h)
    return self.s.output_scale * h[:, 0], new_memory

  def named_params(self):
    return {id(m): dict(m.named_parameters()) for m in self.module}


def _flat(d: dict):
  import torch

  return torch.cat([v.reshape(-1) for v in d.values()])


def _unflat(flat, like: dict) -> dict:
  out, i = {}, 0
  for k, v in like.items():
    out[k] = flat[i : i + v.numel()].reshape(v.shape)
    i += v.numel()
  return out


class Peer:
  """One peer subject: prepared cycles of batch indices, timed like `speed.Subject`."""

  def __init__(
    self,
    s: Setting,
    mode: str,
    data: dict,
    train_idx: Sequence[np.ndarray],
    val_idx: Sequence[np.ndarray],
    seed: int = 0,
    device: str = "cpu",
  ):
    import torch

    if mode not in MODES:
      raise ValueError(f"mode '{mode}' is not one of {MODES}")
    torch.manual_seed(seed)
    self.s, self.mode, self.device = s, mode, torch.device(device)
    with self.device:  # every tensor made here and in the cycles lives on `device`
      self._build(data, train_idx, val_idx, seed)

  def _build(self, data, train_idx, val_idx, seed: int) -> None:
    import torch

    s = self.s
    self.x = {
      k: torch.as_tensor(
        np.asarray(v, np.int64 if k.endswith("_y") else np.float32), device=self.device
      )
      for k, v in data.items()
    }
    self.train_idx = [torch.tensor(np.asarray(t), dtype=torch.long) for t in train_idx]
    self.val_idx = [torch.tensor(np.asarray(v), dtype=torch.long) for v in val_idx]
    self.interval = self.train_idx[0].shape[0]
    self.model = _student(s)
    self.opt = torch.optim.SGD(self.model.parameters(), lr=s.learning_rate, momentum=s.momentum)
    self.params = {k: v.detach().clone() for k, v in self.model.named_parameters()}
    self.momentum = {k: torch.zeros_like(v) for k, v in self.params.items()}
    # drawn on the CPU (a seeded generator lives on one device), then moved
    with torch.device("cpu"):
      phi = init_dln(s, torch.Generator().manual_seed(seed))
    self.phi = {k: v.to(self.device) for k, v in phi.items()}
    self.teacher = Teacher(s)
    self.teacher_opt = torch.optim.Adam(
      self.teacher.module.parameters(), lr=s.teacher_learning_rate
    )
    self.memory = self.teacher.zero_memory(_flat(self.phi).numel())
    self.features = torch.tensor(
      [0.0, math.log(s.num_classes), math.log(s.num_classes), 1.0 / s.num_classes]
    )
    self.window = []  # (memory before the step, its gradient, its features) per teacher step
    self.outcomes = []  # the validation gradient measured after each of those steps
    self.compile_seconds = 0.0
    self.memory_bytes = {}

  # -- the student's segment -----------------------------------------------------------------
  def _batch(self, idx):
    return self.x["train_x"][idx], self.x["train_y"][idx]

  def _one_hot(self, labels):
    import torch

    return torch.nn.functional.one_hot(labels, self.s.num_classes).float()

  def _func_unroll(self, phi, params, momentum, idx_rows):
    """K differentiable SGD steps with torch.func; returns the final params and momentum."""
    from torch.func import functional_call, grad

    s = self.s

    def loss(p, x, y):
      return dln_loss(s, phi, functional_call(self.model, p, (x,)), self._one_hot(y))

    for idx in idx_rows:
      x, y = self._batch(idx)
      g = grad(loss)(params, x, y)
      momentum = {k: g[k] + s.momentum * momentum[k] for k in g}
      params = {k: params[k] - s.learning_rate * momentum[k] for k in g}
    return params, momentum

  def _func_meta(self, phi, idx_rows, val_idx):
    """Validation loss after the unroll from the current student, as a function of `phi`."""
    from torch.func import functional_call

    params, momentum = self._func_unroll(phi, self.params, self.momentum, idx_rows)
    vx, vy = self.x["val_x"][val_idx], self.x["val_y"][val_idx]
    return val_objective(self.s, functional_call(self.model, params, (vx,)), vy), (params, momentum)

  def _higher_meta(self, phi, idx_rows, val_idx, keep: bool):
    """The same with `higher`: the validation loss (its graph reaches `phi`) and, with `keep`,
    the unrolled student copied back as the student's state."""
    import higher

    self.model.load_state_dict(self.params)
    if self.s.momentum:  # zero at the start: the first step's buffer is then its gradient
      for p, k in zip(self.model.parameters(), self.params):
        self.opt.state[p]["momentum_buffer"] = self.momentum[k].clone()
    with higher.innerloop_ctx(self.model, self.opt, copy_initial_weights=True) as (fmodel, diffopt):
      for idx in idx_rows:
        x, y = self._batch(idx)
        diffopt.step(dln_loss(self.s, phi, fmodel(x), self._one_hot(y)))
      vx, vy = self.x["val_x"][val_idx], self.x["val_y"][val_idx]
      val = val_objective(self.s, fmodel(vx), vy)
      if keep:
        names = [k for k, _ in self.model.named_parameters()]
        final = dict(zip(names, (p.detach() for p in fmodel.parameters())))
        state = diffopt.state[0]
        buffers = {
          names[i]: state[i]["momentum_buffer"].detach()
          for i in range(len(names))
          if "momentum_buffer" in state[i]
        }
        return val, (final, buffers)
      return val, None

  def _hypergradient(self, idx_rows, val_idx):
    """`(g, val_loss, (params, momentum))`: d L_val / d phi through the K steps."""
    import torch

    if self.mode == "func":
      from torch.func import grad

      def objective(phi):
        val, state = self._func_meta(phi, idx_rows, val_idx)
        return val, (val.detach(), state)

      g, (val, state) = grad(objective, has_aux=True)(self.phi)
      return g, val, tuple({k: v.detach() for k, v in d.items()} for d in state)
    phi = {k: v.clone().requires_grad_(True) for k, v in self.phi.items()}
    val, state = self._higher_meta(phi, idx_rows, val_idx, keep=True)
    g = dict(zip(phi, torch.autograd.grad(val, list(phi.values()), materialize_grads=True)))
    return g, val.detach(), state

  # -- one cycle -------------------------------------------------------------------------------
  def _ce_cycle(self, idx_rows):
    import torch

    for idx in idx_rows:
      x, y = self._batch(idx)
      self.opt.zero_grad()
      torch.nn.functional.cross_entropy(self.model(x), y).backward()
      self.opt.step()

  def _window_cycle(self, idx_rows, val_idx):
    import torch

    s = self.s
    g, val, (self.params, self.momentum) = self._hypergradient(idx_rows, val_idx)
    g = _flat(g)
    if self.window:
      self.outcomes.append(g)
      if len(self.outcomes) == s.teacher_every:  # the window's surrogate, truncated BPTT
        weights = torch.stack(self.outcomes).flip(0).cumsum(0).flip(0)
        memory, loss = self.window[0][0], 0.0
        for (_, g_in, f_in), w in zip(self.window, weights):
          update, memory = self.teacher(g_in, f_in, memory)
          loss = loss + (w * update).sum()
        self.teacher_opt.zero_grad()
        loss.backward()
        if s.grad_clip:
          torch.nn.utils.clip_grad_norm_(self.teacher.module.parameters(), s.grad_clip)
        self.teacher_opt.step()
        self.window, self.outcomes = [], []
    with torch.no_grad():
      self.features = torch.stack([self.features[0], self.features[1], val, self.features[3]])
      update, memory = self.teacher(g, self.features, self.memory)
    self.window.append((self.memory, g, self.features))
    self.memory = [(h.detach(), c.detach()) for h, c in memory]
    self.phi = _unflat(_flat(self.phi) + update.detach(), self.phi)

  def _reunroll_cycle(self, idx_rows, val_idx):
    """The authors' meta-iteration: hypergradient, proposal, second unroll into the teacher."""
    import torch

    g, val, _ = self._hypergradient(idx_rows, val_idx)
    g, phi_flat = _flat(g), _flat(self.phi)
    if self.mode == "func":
      from torch.func import grad

      params = self.teacher.named_params()

      def second(p):
        update, memory = self.teacher(g, self.features, self.memory, p)
        loss, state = self._func_meta(_unflat(phi_flat + update, self.phi), idx_rows, val_idx)
        return loss, (update.detach(), [(h.detach(), c.detach()) for h, c in memory], state)

      grads, (update, memory, state) = grad(second, has_aux=True)(params)
      for m in self.teacher.module:
        for name, q in m.named_parameters():
          q.grad = grads[id(m)][name]
      self.params, self.momentum = ({k: v.detach() for k, v in d.items()} for d in state)
    else:
      update, memory = self.teacher(g, self.features, self.memory)
      loss, (self.params, self.momentum) = self._higher_meta(
        _unflat(phi_flat + update, self.phi), idx_rows, val_idx, keep=True
      )
      self.teacher_opt.zero_grad()
      loss.backward()
      update = update.detach()
      memory = [(h.detach(), c.detach()) for h, c in memory]
    if self.s.grad_clip:
      torch.nn.utils.clip_grad_norm_(self.teacher.module.parameters(), self.s.grad_clip)
    self.teacher_opt.step()
    self.memory = memory
    self.phi = _unflat(phi_flat + update, self.phi)

  def _synchronize(self) -> None:
    import torch

    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def time_per_step(self) -> float:
    """Seconds per student step over one pass through the prepared cycles (the device's queue
    drained before and after)."""
    self._synchronize()
    t0 = time.perf_counter()
    with self.device:
      for t, v in zip(self.train_idx, self.val_idx):
        if self.mode == "ce":
          self._ce_cycle(t)
        elif self.s.gradient == "reunroll":
          self._reunroll_cycle(t, v)
        else:
          self._window_cycle(t, v)
    self._synchronize()
    return (time.perf_counter() - t0) / (len(self.train_idx) * self.interval)
