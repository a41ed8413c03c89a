"""The shapes scenes: deterministic by seed, and their boxes, masks and instances agree."""

import numpy as np
import pytest

from l2t_jax.data import shapes


def test_same_seed_same_scenes_and_a_longer_set_starts_with_the_shorter():
  a = shapes.generate(3, 6, 32)
  shapes.generate.cache_clear()
  b = shapes.generate(3, 10, 32)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y[:6])
  other = shapes.generate(4, 6, 32)
  assert not np.array_equal(a.images, other.images)
  train, test = shapes.load(3, 6, 6, 32)
  assert not np.array_equal(train.images, test.images)


def test_boxes_are_the_bounding_boxes_of_the_visible_pixels_and_masks_carry_the_classes():
  s = shapes.generate(0, 40, 32, max_objects=4, border=1)
  assert s.images.dtype == np.uint8 and s.images.shape == (40, 32, 32, 3)
  for boxes, classes, mask, inst in zip(s.boxes, s.classes, s.masks, s.instances):
    n = int((classes >= 0).sum())
    assert n >= 1 and np.all(classes[:n] >= 0) and np.all(classes[n:] == -1)
    np.testing.assert_array_equal(boxes[n:], 0.0)
    assert set(np.unique(inst)) <= set(range(-1, n))
    for i in range(n):
      rows, cols = np.nonzero(inst == i)
      np.testing.assert_array_equal(
        boxes[i], [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
      )
      labels = set(np.unique(mask[inst == i]))
      assert labels <= {classes[i] + 1, shapes.IGNORE_LABEL} and classes[i] + 1 in labels
    np.testing.assert_array_equal(mask[(inst == -1) & (mask != shapes.IGNORE_LABEL)], 0)


def test_the_ignore_band_lies_on_outlines_only():
  s = shapes.generate(1, 20, 32, border=1)
  inst, mask = s.instances, s.masks
  neighbours_differ = np.zeros(inst.shape, bool)
  neighbours_differ[:, 1:] |= inst[:, 1:] != inst[:, :-1]
  neighbours_differ[:, :-1] |= inst[:, 1:] != inst[:, :-1]
  neighbours_differ[:, :, 1:] |= inst[:, :, 1:] != inst[:, :, :-1]
  neighbours_differ[:, :, :-1] |= inst[:, :, 1:] != inst[:, :, :-1]
  band = mask == shapes.IGNORE_LABEL
  assert not (band & ~neighbours_differ).any()
  # The band covers every outline, but for objects it would leave without a labelled pixel.
  kept = neighbours_differ & ~band
  assert kept.mean() < 0.2 * neighbours_differ.mean()
  for n in range(len(inst)):
    for i in np.unique(inst[n][kept[n]]):
      assert i >= 0 and not (band[n] & (inst[n] == i)).any()
  no_band = shapes.generate(1, 20, 32, border=0)
  assert not (no_band.masks == shapes.IGNORE_LABEL).any()


def test_detection_targets_are_normalised_boxes_and_classes():
  s = shapes.generate(2, 5, 48)
  y = shapes.detection_targets(s)
  assert y.shape == (5, 4, 5) and y.dtype == np.float32
  np.testing.assert_allclose(y[..., :4] * 48, s.boxes)
  np.testing.assert_array_equal(y[..., 4], s.classes)
  assert y[..., :4].min() >= 0 and y[..., :4].max() <= 1


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="size=8"):
    shapes.generate(0, 2, 8)
