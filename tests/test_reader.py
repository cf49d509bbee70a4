"""Reader round trips for every YT8M format, real shards, and every bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from conftest import (l2_normalized, multi_hot, random_videos, real_data_dir,
                      write_video_shards)
from yt8m_sdnn.data import formats, reader, scan, writer


def read_all(config: reader.ReaderConfig):
  """Concatenates every batch of the dataset into numpy arrays."""
  parts = list(reader.build_dataset(config))
  return [np.concatenate([np.asarray(part[i]) for part in parts]) for i in range(len(parts[0]))]


def config_for(path, **kwargs) -> reader.ReaderConfig:
  kwargs.setdefault("num_classes", 10)
  kwargs.setdefault("batch_size", 5)
  kwargs.setdefault("deterministic", True)
  return reader.ReaderConfig(data_pattern=str(path), **kwargs)


def expected_features(rgb, audio):
  return np.concatenate([l2_normalized(rgb), l2_normalized(audio)], axis=1)


@pytest.mark.parametrize("id_key", ["id", "video_id"])  # 2018 and 2017 releases
def test_video_level_round_trip(tmp_path, id_key):
  ids, labels, rgb, audio = random_videos(12, 10)
  write_video_shards(tmp_path, ids, labels, rgb, audio, num_shards=1, id_key=id_key)
  features, label_matrix, read_ids = read_all(
      config_for(tmp_path, id_key=id_key, include_ids=True, cycle_length=1))
  assert [i.decode() for i in read_ids] == ids
  np.testing.assert_allclose(features, expected_features(rgb, audio), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(label_matrix, multi_hot(labels, 10))


def test_visual_only_features(video_shards):
  directory, (ids, _, rgb, _) = video_shards
  features, _, read_ids = read_all(config_for(
      directory, feature_names=("mean_rgb",), feature_sizes=(1024,), include_ids=True))
  order = np.argsort(read_ids)
  np.testing.assert_allclose(features[order], l2_normalized(rgb), rtol=1e-6, atol=1e-7)


def test_frame_level_round_trip_mean_pools_dequantized_frames(tmp_path):
  rng = np.random.default_rng(3)
  frames = {f"f{i}": {"rgb": rng.integers(0, 256, (i + 1, 1024), dtype=np.uint8),
                      "audio": rng.integers(0, 256, (i + 1, 128), dtype=np.uint8)}
            for i in range(4)}
  writer.write_shard(str(tmp_path / "frames.tfrecord"),
                     (writer.frame_example(video_id, [int(video_id[1:])], parts)
                      for video_id, parts in frames.items()))
  features, labels, ids = read_all(config_for(
      tmp_path, frame_level=True, feature_names=("rgb", "audio"), include_ids=True))
  for row, video_id in enumerate(i.decode() for i in ids):
    # YT8M dequantization: byte * 4/255 + 4/512 - 2, then the mean over frames.
    rgb = (frames[video_id]["rgb"] * (4 / 255) + 4 / 512 - 2).mean(0, keepdims=True)
    audio = (frames[video_id]["audio"] * (4 / 255) + 4 / 512 - 2).mean(0, keepdims=True)
    np.testing.assert_allclose(features[row], expected_features(rgb, audio)[0], atol=1e-5)
    assert labels[row].nonzero()[0].tolist() == [int(video_id[1:])]


def test_dequantize_matches_yt8m_formula():
  values = formats.dequantize(tf.constant([0, 128, 255], tf.uint8)).numpy()
  # byte * 4/255 + 4/512 - 2: 0 -> -1.9921875, 128 -> 0.0156556, 255 -> 2.0078125
  np.testing.assert_allclose(values, [-1.9921875, 128 * 4 / 255 + 4 / 512 - 2, 2.0078125], atol=1e-6)
  np.testing.assert_array_equal(formats.quantize(values), [0, 128, 255])


def test_zero_feature_vector_stays_zero_not_nan(tmp_path):
  writer.write_shard(str(tmp_path / "zero.tfrecord"), [writer.video_example(
      "z", [1], {"mean_rgb": np.zeros(1024), "mean_audio": np.ones(128)})])
  features, _ = read_all(config_for(tmp_path))
  assert np.all(np.isfinite(features))
  assert np.all(features[0, :1024] == 0)
  np.testing.assert_allclose(np.linalg.norm(features[0, 1024:]), 1.0, rtol=1e-6)


@pytest.mark.parametrize("pattern_kind", ["directory", "glob", "comma_list"])
def test_data_pattern_forms(video_shards, pattern_kind):
  directory, _ = video_shards
  pattern = {"directory": str(directory), "glob": str(directory / "train*.tfrecord"),
             "comma_list": f"{directory}/train00.tfrecord,{directory}/train01*"}[pattern_kind]
  features, _ = read_all(config_for(pattern))
  assert features.shape == (12, 1152)


def test_pattern_matching_no_file_names_the_pattern(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    reader.build_dataset(config_for(tmp_path / "nothing-here*"))


def test_training_mode_shuffles_reproducibly_and_repeats(video_shards):
  directory, _ = video_shards
  config = config_for(directory, training=True, seed=7, num_epochs=2, include_ids=True)
  first = read_all(config)[2]
  second = read_all(config)[2]
  assert len(first) == 24
  np.testing.assert_array_equal(first, second)
  assert sorted(first[:12]) == sorted(first[12:])  # each epoch sees every video once


def test_usable_by_keras_fit(video_shards):
  import keras
  directory, _ = video_shards
  model = keras.Sequential([keras.Input((1152,)), keras.layers.Dense(10, activation="sigmoid")])
  model.compile("adam", "binary_crossentropy")
  history = model.fit(reader.build_dataset(config_for(directory)), epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])


def test_real_2018_validate_shard():
  data = real_data_dir()
  features, labels, ids = read_all(reader.ReaderConfig(
      str(data / "validate" / "validate0000.tfrecord"), batch_size=100, include_ids=True))
  assert features.shape == (284, 1152) and labels.shape == (284, 3862)
  assert len(set(ids.tolist())) == 284
  np.testing.assert_allclose(np.linalg.norm(features[:, :1024], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(features[:, 1024:], axis=1), 1.0, rtol=1e-5)
  assert labels.sum(1).min() >= 1


def test_real_test_shard_without_labels():
  data = real_data_dir()
  path = str(data / "test" / "test0z.tfrecord")
  features, labels, ids = read_all(reader.ReaderConfig(
      path, batch_size=128, include_ids=True, require_labels=False))
  assert features.shape == (305, 1152) and labels.sum() == 0 and len(ids) == 305
  config = reader.ReaderConfig(path, batch_size=128)
  with pytest.raises(reader.READ_ERRORS) as raised:
    read_all(config)
  explained = reader.explain_error(raised.value, config)
  assert isinstance(explained, reader.DataError)
  assert "test0z.tfrecord: record 0" in str(explained) and "no labels" in str(explained)


def explained_error(config: reader.ReaderConfig) -> str:
  with pytest.raises(reader.READ_ERRORS) as raised:
    read_all(config)
  explained = reader.explain_error(raised.value, config)
  assert isinstance(explained, reader.DataError), explained
  return str(explained)


def write_with_bad_record(tmp_path, bad_record, position: int = 3) -> str:
  ids, labels, rgb, audio = random_videos(6, 10)
  records = [writer.video_example(ids[i], labels[i], {"mean_rgb": rgb[i], "mean_audio": audio[i]})
             for i in range(6)]
  records[position] = bad_record
  path = str(tmp_path / "bad.tfrecord")
  writer.write_shard(path, records)
  return path


BAD_RECORDS = {
    "short_feature": (
        writer.video_example("BadA", [1], {"mean_rgb": np.ones(512), "mean_audio": np.ones(128)}),
        "record 3 (id 'BadA'): 'mean_rgb' has 512 values, expected 1024"),
    "missing_key": (
        writer.video_example("BadB", [1], {"mean_rgb": np.ones(1024)}),
        "record 3 (id 'BadB'): 'mean_audio' has 0 values, expected 128"),
    "label_too_large": (
        writer.video_example("BadC", [10], {"mean_rgb": np.ones(1024), "mean_audio": np.ones(128)}),
        "record 3 (id 'BadC'): a label id is out of range [0, 10)"),
    "negative_label": (
        writer.video_example("BadD", [-1], {"mean_rgb": np.ones(1024), "mean_audio": np.ones(128)}),
        "record 3 (id 'BadD'): a label id is out of range"),
    "empty_labels": (
        writer.video_example("BadE", [], {"mean_rgb": np.ones(1024), "mean_audio": np.ones(128)}),
        "record 3 (id 'BadE'): no labels"),
    "nan": (
        writer.video_example("BadF", [1], {"mean_rgb": np.full(1024, np.nan), "mean_audio": np.ones(128)}),
        "record 3 (id 'BadF'): 'mean_rgb' holds NaN or Inf"),
    "inf": (
        writer.video_example("BadG", [1], {"mean_rgb": np.ones(1024), "mean_audio": np.full(128, np.inf)}),
        "record 3 (id 'BadG'): 'mean_audio' holds NaN or Inf"),
    "random_bytes": (b"\x07\xffnot a protobuf at all", "record 3: not a valid tf.train.Example"),
    "frame_level_record": (
        writer.frame_example("BadH", [1], {"rgb": np.zeros((2, 1024), np.uint8),
                                           "audio": np.zeros((2, 128), np.uint8)}),
        "record 3 (id 'BadH'): 'mean_rgb' has 0 values"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_error_names_file_record_and_id(tmp_path, case):
  bad_record, expected = BAD_RECORDS[case]
  path = write_with_bad_record(tmp_path, bad_record)
  message = explained_error(config_for(path, batch_size=4))
  assert message.startswith(path), message
  assert expected in message, message


def test_video_level_record_given_to_frame_reader(tmp_path):
  path = write_with_bad_record(tmp_path, writer.frame_example(
      "F", [1], {"rgb": np.zeros((2, 1024), np.uint8), "audio": np.zeros((2, 128), np.uint8)}),
      position=0)
  message = explained_error(config_for(path, frame_level=True, feature_names=("rgb", "audio")))
  assert f"{path}: record 1 (id 'v001'): 'rgb' needs at least one frame" in message


def test_truncated_shard_is_named(tmp_path):
  path = write_with_bad_record(tmp_path, writer.video_example(
      "ok", [1], {"mean_rgb": np.ones(1024), "mean_audio": np.ones(128)}))
  data = open(path, "rb").read()
  with open(path, "wb") as stream:
    stream.write(data[:-100])  # cut inside the last record
  message = explained_error(config_for(path))
  assert path in message and "truncated or corrupt" in message


def test_skip_corrupt_skips_and_counts(tmp_path):
  path = write_with_bad_record(tmp_path, b"garbage")
  config = config_for(path, skip_corrupt=True, include_ids=True)
  _, _, ids = read_all(config)
  assert sorted(i.decode() for i in ids) == ["v000", "v001", "v002", "v004", "v005"]
  report = scan.scan_shards(dataclasses.replace(config, skip_corrupt=False))
  assert (report.num_records, report.num_bad) == (6, 1)
  assert "record 3" in report.problems[0]


def test_config_rejects_unknown_feature_names():
  with pytest.raises(ValueError, match="Expected video-level feature names"):
    reader.ReaderConfig("x", feature_names=("rgb",), feature_sizes=(1024,))
