"""PASCAL VOC: detection from TensorFlow Datasets (`voc`), segmentation from a VOCdevkit folder.

Detection (`voc_detection`): the usual YOLO protocol, training on VOC 2007 trainval + VOC 2012
trainval (16,551 images) and testing on VOC 2007 test (4,952), read with `tfds.data_source` from
`config.data.data_dir` (prepare `voc/2007` and `voc/2012` as the other TFDS datasets). Every image
is resized to `image_size` x `image_size` (stretched, as YOLO-v3 does); its boxes are kept as
fractions of the image, which that resize leaves unchanged. Labels: `(N, M, 6)` float32 rows
`(x0, y0, x1, y1, class, difficult)`, unused rows `class = -1`, `M` the most objects in an image.
Difficult objects are trained on and, by the VOC protocol, neither rewarded nor punished in mAP.

Segmentation (`voc_segmentation`): VOC 2012's `train` list (1,464 images) for training and its
`val` list (1,449) for testing, the usual protocol (TFDS has no VOC segmentation dataset), read
from the standard layout under `config.data.data_dir`:
  VOCdevkit/VOC2012/JPEGImages/<id>.jpg
  VOCdevkit/VOC2012/SegmentationClass/<id>.png   (palette PNG: class index per pixel, 255 void)
  VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
Every image is placed at the top left of an `image_size` square canvas at its own resolution
(images larger than the canvas are shrunk to fit, the mask by the nearest pixel); the rest of the
canvas is DeepLab's padding, the mean colour `PAD_RGB` in the image and the ignore label 255 in the
mask, so that with `image_size=512` (VOC's images are at most 500 pixels a side) the mean IoU is
measured at full resolution over exactly the annotated pixels.

Images are read with Pillow (installed with matplotlib). Inputs are held in memory as float32 after
standardisation (`l2t_jax.data.dataset`): VOC detection at 416 pixels is about 34 GB, segmentation
at 512 pixels about 9 GB.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from l2t_jax.data.errors import DataError

VOC_CLASSES = (
  "aeroplane",
  "bicycle",
  "bird",
  "boat",
  "bottle",
  "bus",
  "car",
  "cat",
  "chair",
  "cow",
  "diningtable",
  "dog",
  "horse",
  "motorbike",
  "person",
  "pottedplant",
  "sheep",
  "sofa",
  "train",
  "tvmonitor",
)
DETECTION_TRAIN = (
  ("voc/2007", "train"),
  ("voc/2007", "validation"),
  ("voc/2012", "train"),
  ("voc/2012", "validation"),
)
DETECTION_TEST = (("voc/2007", "test"),)
SEGMENTATION_TRAIN_LIST, SEGMENTATION_TEST_LIST = "train", "val"
PAD_RGB = (124, 116, 104)  # the mean colour DeepLab pads images with (ImageNet's, rounded)
IGNORE_LABEL = 255
TRUTH_COLUMNS = 6  # x0, y0, x1, y1, class, difficult


def _resize(image: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
  from PIL import Image

  method = Image.NEAREST if nearest else Image.BILINEAR
  return np.asarray(Image.fromarray(image).resize((width, height), method))


def _detection_rows(objects: dict) -> np.ndarray:
  """One image's objects (TFDS: boxes `(ymin, xmin, ymax, xmax)` as fractions) as truth rows."""
  bbox = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
  rows = np.zeros((len(bbox), TRUTH_COLUMNS), np.float32)
  rows[:, :4] = bbox[:, [1, 0, 3, 2]]
  rows[:, 4] = np.asarray(objects["label"])
  rows[:, 5] = np.asarray(objects["is_difficult"])
  return rows


def _read_detection(tfds, parts: Iterable[tuple[str, str]], size: int, data_dir: str):
  from l2t_jax.data.tfds import source

  images, truths = [], []
  for name, split in parts:
    examples = source(tfds, name, split, data_dir)
    for i in range(len(examples)):
      example = examples[i]
      images.append(_resize(np.asarray(example["image"], np.uint8), size, size))
      truths.append(_detection_rows(example["objects"]))
  return np.stack(images), truths


def pack_truths(truths: list[np.ndarray], rows: int) -> np.ndarray:
  """Per-image truth rows padded to `rows` with unused rows (class -1): (N, rows, 6)."""
  out = np.zeros((len(truths), rows, TRUTH_COLUMNS), np.float32)
  out[:, :, 4] = -1
  for i, t in enumerate(truths):
    out[i, : len(t)] = t
  return out


def load_detection(size: int, data_dir: str = ""):
  """`(x_train, y_train, x_test, y_test, 20)`: VOC 2007+2012 trainval and VOC 2007 test, images
  resized to `size` pixels (uint8), labels packed by `pack_truths`."""
  from l2t_jax.data.tfds import import_tfds

  tfds = import_tfds()
  x_train, t_train = _read_detection(tfds, DETECTION_TRAIN, size, data_dir)
  x_test, t_test = _read_detection(tfds, DETECTION_TEST, size, data_dir)
  rows = max(len(t) for t in t_train + t_test)
  return (x_train, pack_truths(t_train, rows), x_test, pack_truths(t_test, rows), len(VOC_CLASSES))


def devkit_root(data_dir: str) -> str:
  """The VOC2012 folder under `data_dir` (which may be it, or hold it, or hold VOCdevkit/)."""
  base = os.path.expanduser(data_dir or ".")
  for candidate in (
    os.path.join(base, "VOCdevkit", "VOC2012"),
    os.path.join(base, "VOC2012"),
    base,
  ):
    if os.path.isdir(os.path.join(candidate, "ImageSets", "Segmentation")):
      return candidate
  raise DataError(
    f"no VOC 2012 segmentation data under data.data_dir='{data_dir}': expected "
    "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation} there. Download "
    "VOCtrainval_11-May-2012.tar from the PASCAL VOC site, extract it, and pass the folder that "
    "holds VOCdevkit/ as --config.data.data_dir=DIR"
  )


def fit_to_canvas(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The image and its mask at the top left of a `size` square (shrunk to fit when larger),
  padded with `PAD_RGB` and the ignore label."""
  height, width = mask.shape
  if image.shape[:2] != mask.shape:
    raise DataError(f"an image of {image.shape[:2]} pixels has a mask of {mask.shape}")
  scale = min(1.0, size / max(height, width))
  if scale < 1.0:
    height, width = max(1, round(height * scale)), max(1, round(width * scale))
    image, mask = _resize(image, height, width), _resize(mask, height, width, nearest=True)
  canvas = np.empty((size, size, 3), np.uint8)
  canvas[:] = PAD_RGB
  canvas[:height, :width] = image
  labels = np.full((size, size), IGNORE_LABEL, np.uint8)
  labels[:height, :width] = mask
  return canvas, labels


def _read_segmentation(root: str, listing: str, size: int):
  from PIL import Image

  with open(os.path.join(root, "ImageSets", "Segmentation", f"{listing}.txt")) as f:
    ids = [line.strip() for line in f if line.strip()]
  if not ids:
    raise DataError(f"{root}/ImageSets/Segmentation/{listing}.txt lists no images")
  images, masks = [], []
  for i in ids:
    image = np.asarray(Image.open(os.path.join(root, "JPEGImages", f"{i}.jpg")).convert("RGB"))
    mask = np.asarray(Image.open(os.path.join(root, "SegmentationClass", f"{i}.png")))
    canvas, labels = fit_to_canvas(image, mask, size)
    images.append(canvas)
    masks.append(labels)
  return np.stack(images), np.stack(masks)


def load_segmentation(size: int, data_dir: str = ""):
  """`(x_train, y_train, x_test, y_test, 21)`: VOC 2012 train and val on `size` square canvases
  (uint8 images, uint8 masks with the background 0, the classes 1..20 and 255 ignored)."""
  root = devkit_root(data_dir)
  x_train, y_train = _read_segmentation(root, SEGMENTATION_TRAIN_LIST, size)
  x_test, y_test = _read_segmentation(root, SEGMENTATION_TEST_LIST, size)
  return x_train, y_train, x_test, y_test, len(VOC_CLASSES) + 1
