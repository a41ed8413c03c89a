"""`l2t-train`: run one experiment from an ml_collections config file.

  l2t-train --config=configs/mnist1d_mlp.py [--config.method=ce] [--config.train.steps=2000] \
            [--workdir=runs/mlp] [--overwrite] [--debug]

A user error (a config, a workdir, the disk) ends in one `l2t-train: error: ...` line that names
the problem and the fix, with exit code 2 (`--debug` prints the traceback before it); a run whose
student diverged ends likewise with exit code 3; a run stopped by SIGTERM with 143.

With `--config.parallel.distributed=True` the run is one process of several (`l2t_jax.parallel`).
When another process of the run dies, JAX's runtime ends this one with an abort and pages of stack
traces; so `l2t-train` runs the training in a child process, watches its stderr, and reports that
end in one line, with exit code 4. Signals are passed on to the child, which dies with it.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from l2t_jax.config import ConfigError

USAGE_ERROR = 2  # a config, a workdir or the disk: the message says what to change
DIVERGED = 3  # the student's loss became NaN or infinite
PEER_LOST = 4  # multi-process: another process of the run stopped, so this one did
# Set in the child that a multi-process `l2t-train` trains in (`_supervise`).
SUPERVISED_ENV = "L2T_JAX_SUPERVISED"
# What JAX's runtime writes before it aborts a process whose run lost another process.
RUNTIME_FATAL = "JAX distributed service detected fatal errors"
# The runtime's own warning and error lines (glog's format: severity, date, time, thread, file:line]).
RUNTIME_ERROR = re.compile(r"^[WEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")
EXAMPLE_CONFIG = "configs/mnist1d_mlp.py"
# How ml_collections starts the message of an exception raised inside a config's get_config().
CONFIG_FILE_ERROR = "Error whilst parsing config file"

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  f"Path to an experiment config file, e.g. {EXAMPLE_CONFIG}; its keys can "
  "be overridden as --config.key=value.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Directory for metrics.jsonl, config.json, summary.json and, with "
  "--config.checkpoint.every=N, checkpoints (created; a run with checkpoints there resumes). "
  "It belongs to one run: locked while the run writes; one holding another run is refused.",
)
_OVERWRITE = flags.DEFINE_bool(
  "overwrite",
  False,
  "Delete the run that --workdir holds (its metrics, summary, teacher and "
  "checkpoints) and start this one, instead of refusing to.",
)
_DEBUG = flags.DEFINE_bool(
  "debug", False, "On an error, print the Python traceback before the one-line message."
)


def _fail(message: str, code: int = USAGE_ERROR, debug: bool = False):
  if debug:
    traceback.print_exc()
  print(f"l2t-train: error: {message}", file=sys.stderr)
  sys.exit(code)


class _QuietForeignThreads:
  """sys.stderr without what threads that Python did not start write to it: after orbax gives up a
  failed read or write (a damaged checkpoint, a full disk), tensorstore's callbacks print a stray
  'Event loop is closed' traceback there for each request still in flight; the error line reports
  the failure itself. `--debug` keeps them."""

  def __init__(self, stream):
    self._stream = stream

  def write(self, text: str) -> int:
    if isinstance(threading.current_thread(), threading._DummyThread):  # a foreign thread
      return len(text)
    return self._stream.write(text)

  def __getattr__(self, name):
    return getattr(self._stream, name)


def _os_error(e: BaseException) -> OSError | None:
  """The OSError behind `e` (itself, or what it was raised from), e.g. a full disk under the
  errors of orbax's writer threads."""
  seen = set()
  while e is not None and id(e) not in seen:
    if isinstance(e, OSError) and e.errno is not None:
      return e
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return None


def describe_os_error(e: OSError) -> str:
  """One line for an OSError: what failed, on which file, and what to do."""
  where = f" ({e.filename})" if e.filename else ""
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    fix = "free some space, or choose a --workdir on another disk"
  elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    fix = "choose a writable --workdir"
  else:
    fix = "check the --workdir and the file named"
  return f"{e.strerror or e}{where}; {fix}"


def _main(argv):
  if len(argv) > 1:
    _fail(
      f"unexpected arguments {argv[1:]}; the options are --config, --config.KEY=VALUE, "
      "--workdir, --overwrite and --debug"
    )
  if flags.FLAGS["config"].value is None:
    _fail(f"--config is required, e.g. --config={EXAMPLE_CONFIG}")
  import ml_collections

  if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
    path = config_flags.get_config_filename(flags.FLAGS["config"])
    _fail(
      f"{path} gave no config (get_config() returned {type(_CONFIG.value).__name__}, or the "
      "file could not be read); get_config() must return an ml_collections.ConfigDict, e.g. "
      "l2t_jax.config.default_config() with changes"
    )
  if not _DEBUG.value:
    logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing out of the progress lines
    # orbax logs each failure of its writer threads with a traceback; the error line says it once
    logging.get_absl_logger().addFilter(lambda record: "/orbax/" not in record.pathname)
    sys.stderr = _QuietForeignThreads(sys.stderr)
  if _CONFIG.value.parallel.distributed and not os.environ.get(SUPERVISED_ENV):
    sys.exit(_supervise())
  from l2t_jax.data import DataError
  from l2t_jax.train import Diverged, Interrupted, train

  try:
    train(_CONFIG.value, workdir=_WORKDIR.value, overwrite=_OVERWRITE.value)
  except Interrupted as e:
    print(f"l2t-train: {e}", file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)
  except (ConfigError, DataError) as e:
    _fail(str(e), debug=_DEBUG.value)
  except Diverged as e:
    _fail(str(e), DIVERGED, debug=_DEBUG.value)
  except Exception as e:  # noqa: BLE001 (an OSError at its root is the user's disk; else a bug)
    cause = _os_error(e)
    if cause is None:
      raise
    _fail(describe_os_error(cause), debug=_DEBUG.value)


def _die_with_parent() -> None:
  """In the child, before it runs: it gets SIGKILL when the supervising process dies (Linux)."""
  try:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def _lost_reason(log: list[str]) -> str:
  """What the runtime's abort says happened, in a few words."""
  text = " ".join(log)
  dead = re.search(r"tasks are unhealthy \(stopped sending heartbeats\):\s*([\d ,]+)", text)
  if dead:
    return f"process {dead.group(1).strip()} stopped sending heartbeats"
  if "leader task" in text or "coordination service" in text:
    return "the coordinator (process 0) can no longer be reached"
  return "the runtime reported a fatal error"


def _supervise() -> int:
  """Runs this command in a child process (same arguments, `SUPERVISED_ENV` set); passes its
  stdout through, and its stderr, except for the runtime's abort when the run lost a process,
  which becomes one `l2t-train: error:` line and PEER_LOST. Returns the exit code."""
  import subprocess

  child = subprocess.Popen(
    [sys.executable, "-m", "l2t_jax.cli", *sys.argv[1:]],
    env={**os.environ, SUPERVISED_ENV: "1"},
    stderr=subprocess.PIPE,
    preexec_fn=_die_with_parent,
    text=True,
    errors="replace",
  )
  for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, lambda n, _: child.send_signal(n))
  # From the runtime's first warning or error line on, stderr is held until the child ends: shown as it is,
  # unless it ends in the runtime's abort for a lost process.
  held: list[str] = []
  for line in child.stderr:
    if held or RUNTIME_ERROR.match(line):
      held.append(line)
    else:
      sys.stderr.write(line)
  lost = any(RUNTIME_FATAL in line for line in held)
  code = child.wait()
  if lost:
    print(
      f"l2t-train: error: another process of this multi-process run stopped "
      f"({_lost_reason(held)}), so this one stopped too; see the other processes' output, then "
      "start the same command on every process again (a run with checkpoints resumes)",
      file=sys.stderr,
    )
    return PEER_LOST
  sys.stderr.writelines(held)
  return code if code >= 0 else 128 - code


def _config_path(argv: list[str]) -> tuple[int, str | None]:
  """The position and value of --config in `argv` ((len(argv), None) when absent)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return i, arg.split("=", 1)[1]
    if arg == "--config":
      return i, argv[i + 1] if i + 1 < len(argv) else None
  return len(argv), None


def _check_argv(argv: list[str]) -> None:
  """What absl would report late or obscurely: overrides without a config file, a missing file."""
  at, path = _config_path(argv)
  early = [a for a in argv[1:at] if a.startswith("--config.")]
  if early:
    _fail(
      f"{early[0].split('=')[0]} overrides a key of the config file, but "
      f"{'--config comes after it' if path else 'there is no --config'}: pass "
      f"--config={path or EXAMPLE_CONFIG} first"
    )
  if path is not None and not os.path.isfile(path.split(":", 1)[0]):
    _fail(
      f"config file '{path.split(':', 1)[0]}' not found (--config={path}); pass an existing "
      f"file, e.g. --config={EXAMPLE_CONFIG}"
    )


def _parse_flags(argv):
  """absl's parsing, with every mistake reported in one line."""
  _check_argv(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    text = str(e)
    if CONFIG_FILE_ERROR in text and "--debug" not in argv:
      # get_config refused its argument (e.g. configs/cifar.py:NAME): its message, not the trace
      _fail(f"--config={_config_path(argv)[1]}: {text.strip().splitlines()[-1]}")
    _fail(f"{text}. Pass --helpfull to see the flags.", debug="--debug" in argv)
  except (KeyError, AttributeError) as e:
    text = str(e.args[0] if e.args else e)
    if "get_config" in text:
      _, path = _config_path(argv)
      _fail(
        f"{path} has no get_config() function; a config file defines get_config() returning "
        f"an ml_collections.ConfigDict (see {EXAMPLE_CONFIG})",
        debug="--debug" in argv,
      )
    key = re.search(r"(\w+)", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    _fail(
      f"unknown config key '{key.group(1) if key else text}' in an override"
      + (f" (did you mean '{hint.group(1)}'?)" if hint else "")
      + ". Every key must exist in the config file (see l2t_jax.config.default_config()).",
      debug="--debug" in argv,
    )


def main():
  app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
