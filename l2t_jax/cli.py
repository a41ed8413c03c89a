"""`l2t-train`: run one experiment from an ml_collections config file.

  l2t-train --config=configs/mnist1d_mlp.py [--config.method=ce] [--config.train.steps=2000] \
            [--workdir=runs/mlp]
"""

from __future__ import annotations

import re
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from l2t_jax.config import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an experiment config file, e.g. configs/mnist1d_mlp.py; its keys can "
    "be overridden as --config.key=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for metrics.jsonl, config.json, summary.json and, with "
    "--config.checkpoint.every=N, checkpoints (created; a run with checkpoints there resumes).")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; options are --config, --config.KEY=VALUE, "
                         "--workdir")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config=configs/mnist1d_mlp.py")
  logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing out of the progress lines
  from l2t_jax.data import DataError
  from l2t_jax.train import Interrupted, train
  try:
    train(_CONFIG.value, workdir=_WORKDIR.value)
  except (ConfigError, DataError) as e:
    print(f"l2t-train: {e}", file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    print(f"l2t-train: {e}", file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)


def _parse_flags(argv):
  """absl's parsing, with overrides of keys the config does not have reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"l2t-train: {e}\nPass --helpfull to see the flags.", file=sys.stderr)
  except (KeyError, AttributeError) as e:
    text = str(e.args[0] if e.args else e)
    key = re.search(r"(\w+)", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    print(f"l2t-train: unknown config key '{key.group(1) if key else text}' in an override"
          + (f" (did you mean '{hint.group(1)}'?)" if hint else "")
          + ". Every key must exist in the config file (see l2t_jax.config.default_config()).",
          file=sys.stderr)
  sys.exit(2)


def main():
  app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
