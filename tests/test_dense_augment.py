"""Detection and segmentation augmentation: boxes and masks follow their image through every zoom,
shift and flip, and a zoom of 1 only mirrors."""

import jax
import numpy as np

from l2t_jax.data import dense_augment, shapes

SIZE = 32


def _one_object_scenes(count, kind=None):
  """`count` scenes of one object each (of class `kind`, when given: a square's bounding box is
  reached by whole rows and columns of its pixels, which resampling cannot miss)."""
  scenes = shapes.generate(seed=3, count=8 * count, size=SIZE, max_objects=1, border=0)
  pick = np.nonzero(scenes.classes[:, 0] == kind)[0] if kind is not None else np.arange(count)
  pick = pick[:count]
  assert len(pick) == count
  return (
    scenes.images[pick].astype(np.float32),
    shapes.detection_targets(scenes)[pick],
    scenes.masks[pick],
  )


def test_augmented_boxes_are_the_bounding_boxes_of_the_augmented_masks():
  images, truth, masks = _one_object_scenes(16, kind=shapes.CLASSES.index("square"))
  keys = jax.random.split(jax.random.PRNGKey(0), len(images))
  zoom = (0.5, 2.0)
  _, boxes = jax.device_get(dense_augment.detection_batch(keys, images, truth, zoom))
  _, warped = jax.device_get(dense_augment.segmentation_batch(keys, images, masks, zoom))
  kept = 0
  for box, mask in zip(boxes, warped, strict=True):
    rows, cols = np.nonzero((mask > 0) & (mask != dense_augment.IGNORE_LABEL))
    if box[0, 4] < 0:  # dropped: most of the object left the image
      continue
    kept += 1
    assert int(box[0, 4]) + 1 == mask[rows[0], cols[0]]  # the class travels with the box
    from_mask = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    np.testing.assert_allclose(box[0, :4] * SIZE, from_mask, atol=1.0)
    assert np.all(box[1:, 4] == -1)  # unused rows stay unused
  assert kept >= 8


def test_zoom_one_keeps_or_mirrors_image_boxes_and_mask_together():
  images, truth, masks = _one_object_scenes(6)
  keys = jax.random.split(jax.random.PRNGKey(1), len(images))
  x, boxes = jax.device_get(dense_augment.detection_batch(keys, images, truth, (1.0, 1.0)))
  _, warped = jax.device_get(dense_augment.segmentation_batch(keys, images, masks, (1.0, 1.0)))
  flips = 0
  for i in range(len(images)):
    mirrored = not np.allclose(x[i], images[i], atol=1e-3)
    flips += mirrored
    if mirrored:
      np.testing.assert_allclose(x[i], images[i][:, ::-1], atol=1e-3)
      np.testing.assert_array_equal(warped[i], masks[i][:, ::-1])
      expected = truth[i].copy()
      expected[0, [0, 2]] = 1.0 - truth[i][0, [2, 0]]
      np.testing.assert_allclose(boxes[i], expected, atol=1e-6)
    else:
      np.testing.assert_array_equal(warped[i], masks[i])
      np.testing.assert_allclose(boxes[i], truth[i], atol=1e-6)
  assert 0 < flips < len(images)
