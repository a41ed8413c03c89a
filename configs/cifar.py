"""CIFAR-10 and CIFAR-100 with the students of the paper's tables, L2T-DLN: one config per setting
DATASET_STUDENT, named after a colon (ml_collections passes it to `get_config`):

  l2t-train --config=configs/cifar.py:cifar10_resnet32 --config.data.data_dir=DIR

Each student trains on the schedule of its authors, the same on both datasets:
- resnet8, resnet20, resnet32 (He et al. 2016, CIFAR variant): SGD with momentum 0.9, learning
  rate 0.1, weight decay 1e-4, batch 128, 64k steps, the rate divided by 10 at 32k and 48k;
- wrn, WRN-28-10 (Zagoruyko & Komodakis 2016): SGD with Nesterov momentum 0.9, learning rate 0.1,
  weight decay 5e-4, batch 128, 200 epochs of 390 steps (78k steps), the rate multiplied by 0.2 at
  epochs 60, 120 and 160; no dropout;
- densenet, DenseNet-BC-100 with growth rate 12 (Huang et al. 2017): SGD with Nesterov momentum
  0.9, learning rate 0.1, weight decay 1e-4, batch 64, 300 epochs of 782 steps (234.6k steps), the
  rate divided by 10 at 50% and 75% of training.
All: 4-pixel pad + random crop + horizontal flip; 5k of the 50k training images are carved off as
validation. Meta-training settings are the project's defaults; the meta-objective uses 1000
validation images per cycle. The same students under the authors' protocol:
configs/reference_cifar.py.
"""

from l2t_jax.config import default_config

DATASETS = ("cifar10", "cifar100")

# The fields of `config.student` for each student of the tables.
STUDENTS = {
  "resnet8": dict(name="resnet", depth=8),
  "resnet20": dict(name="resnet", depth=20),
  "resnet32": dict(name="resnet", depth=32),
  "wrn": dict(name="wrn", depth=28, widen_factor=10),
  "densenet": dict(name="densenet", depth=100, growth_rate=12),
}

# Each family's schedule: `config.optim` fields, the run's length and batch, and how often it is
# evaluated and checkpointed.
SCHEDULES = {
  "resnet": dict(
    optim=dict(nesterov=False, weight_decay=1e-4, boundaries=(32_000, 48_000), decay_factor=0.1),
    steps=64_000,
    batch_size=128,
    every=2000,
  ),
  "wrn": dict(
    optim=dict(
      nesterov=True, weight_decay=5e-4, boundaries=(23_400, 46_800, 62_400), decay_factor=0.2
    ),
    steps=78_000,
    batch_size=128,
    every=2000,
  ),
  "densenet": dict(
    optim=dict(nesterov=True, weight_decay=1e-4, boundaries=(117_300, 175_950), decay_factor=0.1),
    steps=234_600,
    batch_size=64,
    every=4000,
  ),
}

# The CIFAR settings of the paper's classification tables, in its order.
SETTINGS = tuple(f"{dataset}_{student}" for dataset in DATASETS for student in STUDENTS)


def parse(setting: str, config_file: str = "configs/cifar.py") -> tuple[str, dict]:
  """`(dataset, the config.student fields)` of a setting name such as 'cifar100_wrn'; the error
  for an unknown name shows how to pass one to `config_file`."""
  dataset, _, student = setting.partition("_")
  if dataset not in DATASETS or student not in STUDENTS:
    what = f"unknown CIFAR setting {setting!r}" if setting else "no CIFAR setting given"
    raise ValueError(
      f"{what}; choose one of {', '.join(SETTINGS)} "
      f"after a colon, e.g. --config={config_file}:{SETTINGS[0]}"
    )
  return dataset, dict(STUDENTS[student])


def get_config(setting: str = ""):
  dataset, student = parse(setting)
  schedule = SCHEDULES[student["name"]]
  c = default_config()
  c.data.name = dataset
  c.data.val_size = 5000
  c.data.augment = True
  for key, value in student.items():
    c.student[key] = value
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.schedule = "piecewise"
  for key, value in schedule["optim"].items():
    c.optim[key] = value
  c.train.steps = schedule["steps"]
  c.train.batch_size = schedule["batch_size"]
  c.train.log_every = 500
  c.train.eval_every = schedule["every"]
  c.meta.val_batch_size = 1000
  c.checkpoint.every = schedule["every"]
  c.parallel.devices = 0  # the batch split over all local devices
  return c
