"""Shapes: procedurally generated scenes for detection and segmentation, made locally (no download).

Every image is a cluttered background (a colour gradient, pixel noise and thin random lines) with
one to `max_objects` filled shapes of `CLASSES` (circle, square, triangle, cross) drawn on top of
each other. A shape's colour is random, so only its form tells its class. Shapes may overlap: a
later one hides what lies under it, but a placement that would leave an earlier shape with less
than `MIN_VISIBLE` of its own pixels is drawn again elsewhere (or, after `PLACEMENT_TRIES`, not at
all), so every object stays recognisable.

Annotations follow PASCAL VOC's conventions:
- boxes are the bounding boxes of the *visible* pixels of each object, in continuous pixel
  coordinates `(x0, y0, x1, y1)` (a pixel (r, c) spans [c, c+1) x [r, r+1)), unused rows padded
  with zeros and class -1;
- the semantic mask holds 0 for the background and `class + 1` for an object's pixels, and, as in
  VOC, the ignore label `IGNORE_LABEL` (255) on a band of `border` pixels along every object's
  outline, where the class of a pixel is ambiguous (an object so thin that the band would cover
  all of it keeps its pixels labelled);
- `instances` holds the index of the object seen at every pixel (-1: background), with no band.

Everything is numpy and a pure function of `(seed, count, size, ...)`: the same arguments give the
same scenes on every machine. `generate` is cached per argument set.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

CLASSES = ("circle", "square", "triangle", "cross")
IGNORE_LABEL = 255  # VOC's "void" label: excluded from segmentation losses and metrics
MIN_VISIBLE = 0.5  # an object keeps at least this fraction of its pixels visible
PLACEMENT_TRIES = 20  # placements tried per shape before it is left out
MIN_RADIUS_FRACTION = 0.1  # a shape's half-size, as a fraction of the image side
MAX_RADIUS_FRACTION = 0.3
CROSS_ARM = 0.35  # a cross's arm width as a fraction of its size
CLUTTER_LINES = (2, 6)  # thin random lines per background, at least and at most
NOISE_STD = 12.0  # pixel noise of the background (0..255 scale)
TRAIN_STREAM, TEST_STREAM = 0, 1  # the two splits draw from [seed, stream, index]


class Scenes(NamedTuple):
  images: np.ndarray  # (N, H, W, 3) uint8
  boxes: np.ndarray  # (N, M, 4) float32, (x0, y0, x1, y1) in pixels; zeros where unused
  classes: np.ndarray  # (N, M) int32, class index or -1 where unused
  masks: np.ndarray  # (N, H, W) uint8: 0 background, class + 1, IGNORE_LABEL on outlines
  instances: np.ndarray  # (N, H, W) int8: the object index seen at each pixel, -1 background


def _shape_mask(
  kind: int, cy: float, cx: float, r: float, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
  """The pixels (centres at integer + 0.5) covered by shape `kind` of half-size `r` at (cy, cx)."""
  dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
  name = CLASSES[kind]
  if name == "circle":
    return dy * dy + dx * dx <= r * r
  if name == "square":
    return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)  # the same area scale as a circle
  if name == "triangle":  # apex up, base at dy = r
    return (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
  arm = CROSS_ARM * r
  inside = (np.abs(dy) <= r) & (np.abs(dx) <= r)
  return inside & ((np.abs(dy) <= arm) | (np.abs(dx) <= arm))


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
  """A colour gradient with pixel noise and a few thin lines of random colours."""
  c0, c1 = rng.uniform(0, 255, (2, 3))
  angle = rng.uniform(0, 2 * np.pi)
  t = ((np.cos(angle) * xx + np.sin(angle) * yy) / size)[..., None]
  t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
  image = c0 * (1 - t) + c1 * t + rng.normal(0, NOISE_STD, (size, size, 3))
  for _ in range(rng.integers(CLUTTER_LINES[0], CLUTTER_LINES[1] + 1)):
    (y0, x0), (y1, x1) = rng.uniform(0, size, (2, 2))
    steps = np.linspace(0, 1, 2 * size)
    rows = np.clip((y0 + (y1 - y0) * steps).astype(int), 0, size - 1)
    cols = np.clip((x0 + (x1 - x0) * steps).astype(int), 0, size - 1)
    image[rows, cols] = rng.uniform(0, 255, 3)
  return image


def _outline(instances: np.ndarray, border: int) -> np.ndarray:
  """Pixels within `border` pixels (4-neighbourhood steps) of a change of instance."""
  edge = np.zeros(instances.shape, bool)
  diff_y = instances[1:] != instances[:-1]
  diff_x = instances[:, 1:] != instances[:, :-1]
  edge[1:] |= diff_y
  edge[:-1] |= diff_y
  edge[:, 1:] |= diff_x
  edge[:, :-1] |= diff_x
  band = edge
  for _ in range(border - 1):
    grown = band.copy()
    grown[1:] |= band[:-1]
    grown[:-1] |= band[1:]
    grown[:, 1:] |= band[:, :-1]
    grown[:, :-1] |= band[:, 1:]
    band = grown
  return band if border > 0 else np.zeros_like(edge)


def _scene(rng: np.random.Generator, size: int, max_objects: int, border: int):
  yy, xx = np.mgrid[0:size, 0:size]
  image = _background(rng, size, yy, xx)
  instances = np.full((size, size), -1, np.int8)
  areas, kinds = [], []
  for _ in range(rng.integers(1, max_objects + 1)):
    kind = int(rng.integers(len(CLASSES)))
    for _ in range(PLACEMENT_TRIES):
      r = rng.uniform(MIN_RADIUS_FRACTION, MAX_RADIUS_FRACTION) * size
      cy, cx = rng.uniform(r * 0.5, size - r * 0.5, 2)
      covered = _shape_mask(kind, cy, cx, r, yy, xx)
      trial = np.where(covered, len(kinds), instances)
      visible = np.bincount(trial[trial >= 0], minlength=len(kinds) + 1)
      if covered.any() and all(visible[i] >= MIN_VISIBLE * areas[i] for i in range(len(kinds))):
        instances = trial.astype(np.int8)
        areas.append(int(covered.sum()))
        kinds.append(kind)
        image[covered] = rng.uniform(0, 255, 3)
        break
  boxes = np.zeros((max_objects, 4), np.float32)
  classes = np.full((max_objects,), -1, np.int32)
  for i, kind in enumerate(kinds):
    rows, cols = np.nonzero(instances == i)
    boxes[i] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    classes[i] = kind
  labels = np.where(instances >= 0, np.asarray(kinds + [0], np.int32)[instances] + 1, 0)
  band = _outline(instances, border)
  for i in range(len(kinds)):  # a thin object all outline keeps its pixels labelled
    if not (~band & (instances == i)).any():
      band &= instances != i
  mask = np.where(band, IGNORE_LABEL, labels).astype(np.uint8)
  return np.clip(image, 0, 255).astype(np.uint8), boxes, classes, mask, instances


@functools.lru_cache(maxsize=8)
def generate(
  seed: int,
  count: int,
  size: int = 64,
  max_objects: int = 4,
  border: int = 1,
  stream: int = TRAIN_STREAM,
) -> Scenes:
  """`count` scenes of `size` x `size` pixels drawn from `(seed, stream)` (each scene from its own
  `[seed, stream, index]` generator, so a longer set starts with the shorter one's scenes)."""
  if size < 16 or max_objects < 1 or border < 0 or count < 1:
    raise ValueError(
      f"shapes: size={size} (>= 16), max_objects={max_objects} (>= 1), "
      f"border={border} (>= 0) and count={count} (>= 1) out of range"
    )
  parts = [
    _scene(np.random.default_rng([seed, stream, i]), size, max_objects, border)
    for i in range(count)
  ]
  return Scenes(*(np.stack(a) for a in zip(*parts)))


def load(
  seed: int, train_size: int, test_size: int, size: int = 64, max_objects: int = 4, border: int = 1
) -> tuple[Scenes, Scenes]:
  """`(train, test)`: two disjoint sets of scenes (different streams of the same seed)."""
  return (
    generate(seed, train_size, size, max_objects, border, TRAIN_STREAM),
    generate(seed, test_size, size, max_objects, border, TEST_STREAM),
  )


def detection_targets(scenes: Scenes) -> np.ndarray:
  """The boxes and classes of every scene packed into one array `(N, M, 5)` float32: `(x0, y0,
  x1, y1)` normalised by the image size to [0, 1], then the class (-1 for unused rows)."""
  size = np.asarray(scenes.images.shape[2:0:-1], np.float32)  # (W, H)
  boxes = scenes.boxes / np.tile(size, 2)
  return np.concatenate([boxes, scenes.classes[..., None].astype(np.float32)], axis=-1)


def load_task(name: str, data_cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
  """`(x_train, y_train, x_test, y_test, num_classes)` of `shapes_detection` (labels: the packed
  boxes of `detection_targets`, one class per shape) or `shapes_segmentation` (labels: the masks,
  the background a class of its own) under `config.data`'s sizes and seed."""
  train, test = load(
    data_cfg.shapes_seed, data_cfg.shapes_train_size, data_cfg.shapes_test_size, data_cfg.image_size
  )
  if name == "shapes_detection":
    return (
      train.images,
      detection_targets(train),
      test.images,
      detection_targets(test),
      len(CLASSES),
    )
  if name == "shapes_segmentation":
    return train.images, train.masks, test.images, test.masks, len(CLASSES) + 1
  raise ValueError(f"'{name}' is not a shapes task: shapes_detection or shapes_segmentation")
