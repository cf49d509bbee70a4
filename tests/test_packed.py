"""The packed numpy copy of video-level shards matches the shards to the quantization error."""

from __future__ import annotations

import numpy as np
import pytest

from bench import pack_real
from conftest import random_videos, real_data_dir, write_video_shards
from yt8m_sdnn.data import packed
from yt8m_sdnn.data.files import resolve_files


@pytest.fixture
def shards(tmp_path):
  ids, labels, rgb, audio = random_videos(40, 7, seed=3)
  # Inside YT8M's 8-bit range, as real video-level means are.
  rgb, audio = np.clip(rgb, -1.99, 2.0), np.clip(audio, -1.99, 2.0)
  files = write_video_shards(tmp_path, ids, labels, rgb, audio, num_shards=4)
  return files, (ids, labels, np.concatenate([rgb, audio], axis=1))


def test_quantization_error_is_at_most_half_a_step():
  values = np.linspace(packed.BIAS, packed.BIAS + 255 * packed.SCALE, 10_001)
  error = np.abs(packed.dequantize(packed.quantize(values)) - values)
  assert error.max() <= packed.MAX_ERROR + 1e-6
  assert error.max() > 0.9 * packed.MAX_ERROR  # the bound is reached, so it is the right one


def test_packed_shards_read_back_like_the_reader(shards, tmp_path):
  files, (ids, labels, raw) = shards
  path = pack_real.pack(files, str(tmp_path / "out"),
                        {"train": "train0[01]*", "test": "train03*"}, num_classes=7)
  data = packed.load_packed(path)
  assert list(data.ids) == ids
  assert data.splits == {"train": ["train00.tfrecord", "train01.tfrecord"],
                         "test": ["train03.tfrecord"]}
  expected_labels = np.zeros((40, 7), np.float32)
  for row, row_labels in enumerate(labels):
    expected_labels[row, row_labels] = 1
  np.testing.assert_array_equal(data.dense_labels(), expected_labels)
  # Raw values within half a grid step; after normalization, equal to the reader's
  # features to that error over the feature norm.
  with np.load(path) as archive:
    dequantized = packed.dequantize(archive["features"])
  assert np.abs(dequantized - raw).max() <= packed.MAX_ERROR + 1e-6
  assert pack_real.check(path, files) < 1e-2
  test = data.split("test")
  assert list(test.ids) == ids[30:]
  np.testing.assert_array_equal(test.dense_labels(), expected_labels[30:])
  np.testing.assert_array_equal(test.features, data.features[30:])


def test_unknown_file_is_named(tmp_path):
  bad = tmp_path / "bad.npz"
  np.savez(bad, features=np.zeros((1, 2), np.uint8))
  with pytest.raises(ValueError, match=f"{bad}: no packed metadata"):
    packed.load_packed(str(bad))


def test_two_real_shards_pack_to_the_readers_features(tmp_path):
  files = resolve_files(str(real_data_dir() / "validate" / "validate000[01]*"))
  path = pack_real.pack(files, str(tmp_path), {"all": "validate*"})
  # 8 bits per value on YT8M's own grid: about 1.2 kB a video.
  data = packed.load_packed(path)
  assert data.num_videos > 400 and 1000 * data.num_videos < len(open(path, "rb").read()) < (
      1300 * data.num_videos)
  assert pack_real.check(path, files) < 5e-3
