"""PASCAL VOC: detection read through TFDS (on `tfds.testing.mock_data`, whose examples we make
VOC-like) and segmentation from a VOCdevkit folder written here, and the detection config
training a few steps with its augmentation on them, shrunk to tiny images and a tiny backbone.
(The segmentation config trains, resumes and runs on two devices in test_detseg_driver.py.)"""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from l2t_jax.config import validate
from l2t_jax.data import DataError, load_dataset, voc
from l2t_jax.students import deeplab, yolo
from l2t_jax.train import train

EXAMPLES_PER_SPLIT = 3
SIDE = 32
TINY = {
  "data.image_size": SIDE,
  "data.val_size": 4,
  "student.base_width": 4,
  "train.batch_size": 4,
  "train.eval_batch_size": 8,
  "meta.val_batch_size": 4,
  "meta.unroll_steps": 1,
  "meta.interval": 2,
  "train.steps": 2,
  "train.log_every": 2,
  "train.eval_every": 2,
  "optim.warmup_steps": 0,
  "optim.boundaries": (),
  "checkpoint.every": 0,
  "parallel.devices": 1,
}


def override(config, overrides):
  """`config` with `{"group.key": value, "key": value}` set."""
  for key, value in overrides.items():
    group, leaf = key.split(".") if "." in key else (None, key)
    setattr(config[group] if group else config, leaf, value)
  return config


def tiny(module, **overrides):
  """The config of `module` (configs/) shrunk to tiny images, a tiny backbone (one block per
  stage) and 2 steps."""
  config = module.get_config()
  stages = len(yolo.DARKNET53_BLOCKS if config.student.name == "yolo" else deeplab.RESNET18_BLOCKS)
  return override(config, {**TINY, "student.stage_blocks": (1,) * stages, **overrides})


def _fake_objects(rng, count):
  lo = rng.uniform(0, 0.5, (count, 2))
  hi = lo + rng.uniform(0.1, 0.5, (count, 2))
  return {
    "bbox": np.concatenate([lo, hi], -1).astype(np.float32),  # (ymin, xmin, ymax, xmax)
    "label": rng.integers(0, len(voc.VOC_CLASSES), count),
    "is_difficult": rng.random(count) < 0.3,
  }


def _fake_source(builder, split, **_):
  """VOC-like examples, the same for the same (config, split): images of any size, objects whose
  fields agree in length (TFDS's own random examples do not)."""
  seed = [int(builder.builder_config.name), ["train", "validation", "test"].index(str(split))]
  rng = np.random.default_rng(seed)
  examples = []
  for _ in range(EXAMPLES_PER_SPLIT):
    height, width = rng.integers(20, 60, 2)
    examples.append(
      {
        "image": rng.integers(0, 256, (height, width, 3), np.uint8),
        "objects": _fake_objects(rng, int(rng.integers(1, 5))),
      }
    )
  return examples


@pytest.fixture
def mock_voc():
  with tfds.testing.mock_data(as_data_source_fn=_fake_source):
    yield


def test_voc_detection_reads_2007_and_2012_trainval_and_2007_test(mock_voc):
  from configs import voc_yolo

  ds = load_dataset(validate(tiny(voc_yolo)))
  train_sources = [
    _fake_source(_Builder(year), split)
    for year, split in (
      ("2007", "train"),
      ("2007", "validation"),
      ("2012", "train"),
      ("2012", "validation"),
    )
  ]
  examples = [e for source in train_sources for e in source]
  assert (len(ds.train), len(ds.val), len(ds.test)) == (len(examples) - 4, 4, EXAMPLES_PER_SPLIT)
  assert ds.input_shape == (SIDE, SIDE, 3) and ds.num_classes == 20
  for truth, example in zip(np.concatenate([ds.train.y, ds.val.y]), examples, strict=True):
    objects = example["objects"]
    n = len(objects["label"])
    np.testing.assert_allclose(truth[:n, :4], objects["bbox"][:, [1, 0, 3, 2]])  # x0 y0 x1 y1
    np.testing.assert_array_equal(truth[:n, 4], objects["label"])
    np.testing.assert_array_equal(truth[:n, 5], objects["is_difficult"])
    assert np.all(truth[n:, 4] == -1)


class _Builder:
  def __init__(self, year):
    self.builder_config = type("Config", (), {"name": year})


def write_devkit(root, sizes):
  """A VOCdevkit/VOC2012 folder with one image and mask per size, listed half in train, half in
  val; each mask: background, a class-7 rectangle, a 255 band on its left edge."""
  base = os.path.join(root, "VOCdevkit", "VOC2012")
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    os.makedirs(os.path.join(base, sub))
  rng = np.random.default_rng(0)
  masks, ids = {}, []
  for i, (height, width) in enumerate(sizes):
    name = f"2012_{i:06d}"
    ids.append(name)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(
      os.path.join(base, "JPEGImages", f"{name}.jpg")
    )
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 7
    mask[height // 4 : height // 2, width // 4] = voc.IGNORE_LABEL
    png = Image.new("P", (width, height))  # a palette PNG, as VOC's: the pixel values are indices
    png.putdata(mask.ravel().tolist())
    png.putpalette(list(rng.integers(0, 256, 768)))
    png.save(os.path.join(base, "SegmentationClass", f"{name}.png"))
    masks[name] = mask
  half = len(ids) // 2
  for listing, names in (("train", ids[half:]), ("val", ids[:half])):
    with open(os.path.join(base, "ImageSets", "Segmentation", f"{listing}.txt"), "w") as f:
      f.write("\n".join(names) + "\n")
  return masks, ids[half:], ids[:half]


def test_voc_segmentation_reads_the_devkit_onto_padded_canvases(tmp_path):
  from configs import voc_seg

  sizes = [(20, 24), (48, 40)] + [(24, 28)] * 8  # one image larger than the canvas
  masks, train_ids, test_ids = write_devkit(str(tmp_path), sizes)
  ds = load_dataset(validate(tiny(voc_seg, **{"data.data_dir": str(tmp_path)})))
  assert (len(ds.train), len(ds.val), len(ds.test)) == (len(train_ids) - 4, 4, len(test_ids))
  assert ds.num_classes == 21 and ds.input_shape == (SIDE, SIDE, 3)
  small, large = ds.test.y[0], ds.test.y[1]
  np.testing.assert_array_equal(small[:20, :24], masks[test_ids[0]])  # at its own resolution
  assert np.all(small[20:] == voc.IGNORE_LABEL) and np.all(small[:, 24:] == voc.IGNORE_LABEL)
  # 48 x 40 shrunk to fit 32: 32 x 27 (rounded), labels by the nearest pixel, the rest padding.
  assert set(np.unique(large[:32, :27])) <= {0, 7, voc.IGNORE_LABEL}
  assert np.all(large[:, 27:] == voc.IGNORE_LABEL) and (large[:32, :27] == 7).sum() > 0


def test_missing_devkit_says_where_it_should_be(tmp_path):
  from configs import voc_seg

  with pytest.raises(DataError, match="VOCdevkit/VOC2012"):
    load_dataset(validate(tiny(voc_seg, **{"data.data_dir": str(tmp_path)})))


def test_voc_yolo_config_trains_a_few_steps_on_mock_data(mock_voc):
  from configs import voc_yolo

  summary = train(tiny(voc_yolo, method="ce"), log=lambda _: None).summary
  assert summary["student_steps"] == TINY["train.steps"] and not summary["diverged"]
  assert 0.0 <= summary["test_accuracy"] <= 1.0 and np.isfinite(summary["test_loss"])
  assert np.isfinite(summary["final_train_ce"])
