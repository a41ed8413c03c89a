"""One compilation per shape: a longer run compiles exactly as often as a short one."""

import jax
import pytest

from conftest import small_config
from l2t_jax.train import train

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def count_compiles(config) -> int:
  events = []

  def listener(event, duration, **kwargs):
    if event == COMPILE_EVENT:
      events.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    train(config, log=lambda _: None)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return len(events)


@pytest.mark.parametrize("method", ["l2t_dln"])
def test_no_recompilation_during_a_run(method):
  count_compiles(small_config(method, steps=100))  # warm-up: jax's own small helpers compile once
  counts = []
  for steps in (100, 300):
    config = small_config(method, steps=steps)
    config.train.eval_every = config.train.log_every = 50
    counts.append(count_compiles(config))
  assert counts[0] > 0
  assert counts[0] == counts[1], counts
