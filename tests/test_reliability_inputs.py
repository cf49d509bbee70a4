"""Inputs and trained models checked alike in every path that reads them.

Shards cut inside a record header (read by TensorFlow as a clean end of file), a
directory's other files, shards of the other format, model configs with values of
the wrong type, a model that does not fit its config, hostile loss and reader
settings, full disks (a real 1 MB tmpfs), and the retracing that one model after
another caused: each case of issues 35 and 32 that used to pass silently or end in a
trace.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (ROOT, binary_env, random_videos, real_data_dir, small_tmpfs,
                      write_video_shards)
from yt8m_sdnn import artifacts, evaluation, export, model_files, models, prediction
from yt8m_sdnn.data import feature_cache, files, reader, scan, writer
from yt8m_sdnn.losses import registry as loss_registry

NUM_CLASSES = 5
# A TFRecord: 8-byte length, 4-byte CRC of the length, the record, 4-byte CRC.
FRAMING_BYTES = 16


@pytest.fixture(autouse=True)
def fresh_process_memory():
  feature_cache.clear_memory()
  yield
  feature_cache.clear_memory()


def config_for(path, **kwargs) -> reader.ReaderConfig:
  kwargs.setdefault("num_classes", NUM_CLASSES)
  kwargs.setdefault("batch_size", 4)
  kwargs.setdefault("deterministic", True)
  return reader.ReaderConfig(data_pattern=str(path), **kwargs)


def read_ids(config: reader.ReaderConfig) -> list[str]:
  config = dataclasses.replace(config, include_ids=True)
  return [video.decode() for batch in reader.build_dataset(config) for video in batch[2].numpy()]


def write_cut_shards(directory: pathlib.Path, cut: int):
  """Two shards of 6 videos; the second ends `cut` bytes into its last record's header.

  Returns (cut path, byte where its last record starts, the ids TF still reads).
  """
  directory.mkdir(parents=True, exist_ok=True)
  ids, labels, rgb, audio = random_videos(12, NUM_CLASSES, seed=1)
  write_video_shards(directory, ids, labels, rgb, audio, num_shards=2)
  path = directory / "train01.tfrecord"
  records = [writer.video_example(ids[i], labels[i], {"mean_rgb": rgb[i], "mean_audio": audio[i]})
             for i in range(6, 12)]
  last_start = sum(len(record.SerializeToString()) + FRAMING_BYTES for record in records[:-1])
  assert os.path.getsize(path) == (last_start + len(records[-1].SerializeToString())
                                   + FRAMING_BYTES)
  with open(path, "r+b") as stream:
    stream.truncate(last_start + cut)
  return str(path), last_start, ids[:11]


def assert_names_the_cut(message: str, path: str, last_start: int, cut: int) -> None:
  # 5 whole records (0-4) precede the cut; record 5's header starts at `last_start`.
  assert message.startswith(f"{path}: unreadable after record 4 (truncated or corrupt"), message
  assert f"{cut} bytes into the 12-byte header of record 5, at byte {last_start}" in message


@pytest.mark.parametrize("cut", [1, 5, 11])
@pytest.mark.parametrize("source", ["shards", "memory_cache", "directory_cache"])
def test_a_shard_cut_inside_a_record_header_is_refused_naming_file_and_byte(
    tmp_path, source, cut):
  path, last_start, _ = write_cut_shards(tmp_path / "shards", cut)
  cache = {"shards": None, "memory_cache": feature_cache.MEMORY,
           "directory_cache": str(tmp_path / "cache")}[source]
  # TensorFlow alone reads 11 of the 12 videos and reports a clean end of file.
  assert files.count_records(str(tmp_path / "shards")) == 11
  with pytest.raises(reader.DataError) as raised:
    reader.build_dataset(config_for(tmp_path / "shards", cache=cache))
  assert_names_the_cut(str(raised.value), path, last_start, cut)
  assert "--skip_corrupt" in str(raised.value)
  if cache not in (None, feature_cache.MEMORY):  # refused before a cache of 11 videos
    assert not os.path.exists(cache) or os.listdir(cache) == []


def _tiny_model(feature_size: int = 1152, num_classes: int = NUM_CLASSES) -> keras.Model:
  keras.utils.set_random_seed(0)
  return models.build_model("logistic", feature_size, num_classes)


def test_evaluation_and_prediction_refuse_a_cut_shard_before_writing(tmp_path):
  path, last_start, _ = write_cut_shards(tmp_path / "shards", 3)
  model = _tiny_model()
  with pytest.raises(reader.DataError) as raised:
    evaluation.evaluate(model, config_for(tmp_path / "shards"))
  assert_names_the_cut(str(raised.value), path, last_start, 3)
  output = tmp_path / "out.csv"
  with pytest.raises(reader.DataError) as raised:
    prediction.write_submission(model, config_for(
        tmp_path / "shards", include_ids=True, require_labels=False), str(output))
  assert_names_the_cut(str(raised.value), path, last_start, 3)
  assert sorted(os.listdir(tmp_path)) == ["shards"]  # no CSV, no temporary


def test_skip_corrupt_reads_up_to_the_cut_counts_it_and_warns_once(tmp_path, caplog):
  path, last_start, expected = write_cut_shards(tmp_path / "shards", 7)
  config = config_for(tmp_path / "shards", skip_corrupt=True)
  report = scan.scan_shards(config)
  assert (report.num_records, report.num_bad) == (11, 1)
  assert_names_the_cut(report.problems[0], path, last_start, 7)
  scan._ANNOUNCED.clear()  # pylint: disable=protected-access  # as a fresh process
  with caplog.at_level(logging.WARNING):
    assert sorted(read_ids(config)) == sorted(expected)
    assert sorted(read_ids(config)) == sorted(expected)  # a second read: no second warning
  warnings = [record.getMessage() for record in caplog.records
              if "cut inside a record header" in record.getMessage()]
  assert len(warnings) == 1 and f"at byte {last_start}" in warnings[0], caplog.text
  cached = dataclasses.replace(config, cache=feature_cache.MEMORY)
  assert sorted(read_ids(cached)) == sorted(expected)


def test_a_corrupt_length_field_is_left_to_tensorflow_to_report(tmp_path):
  """A length field that sends the walk of the lengths astray is not called a cut."""
  directory = tmp_path / "shards"
  directory.mkdir()
  [path] = write_video_shards(directory, *random_videos(6, NUM_CLASSES), num_shards=1)
  data = bytearray(open(path, "rb").read())
  first = int.from_bytes(data[:8], "little") + FRAMING_BYTES
  # Record 1's length, made to end the walk 5 bytes before the end of the file.
  data[first:first + 8] = (len(data) - 5 - first - FRAMING_BYTES).to_bytes(8, "little")
  open(path, "wb").write(bytes(data))
  assert files.cut_record_headers([path]) == []  # TF's reading does not confirm a cut
  config = config_for(directory)
  with pytest.raises(reader.READ_ERRORS) as raised:
    list(reader.build_dataset(config))
  message = str(reader.explain_error(raised.value, config))
  assert f"{path}: unreadable after record 0 (truncated or corrupt" in message
  assert "header of record" not in message


def test_real_shards_are_whole_and_their_directories_name_them():
  data = real_data_dir()
  validate = files.resolve_files(str(data / "validate"))
  assert len(validate) == 100 and all(p.endswith(".tfrecord") for p in validate)
  assert os.path.basename(validate[0]) == "validate0000.tfrecord"
  assert files.cut_record_headers(validate) == []
  assert [os.path.basename(p) for p in files.resolve_files(str(data / "kaggle-validate"))] == [
      "validate00.tfrecord"]
  # The release's root holds vocabulary.csv and folders, no shard.
  with pytest.raises(FileNotFoundError) as raised:
    files.resolve_files(str(data))
  assert f"{data}: no *.tfrecord file" in str(raised.value)
  assert "vocabulary.csv" in str(raised.value)


def test_a_directory_stands_for_its_tfrecord_files(tmp_path, caplog):
  ids, labels, rgb, audio = random_videos(8, NUM_CLASSES)
  write_video_shards(tmp_path, ids, labels, rgb, audio)
  (tmp_path / "vocabulary.csv").write_text("Index,TrainVideoCount,Name\n0,1,Game\n")
  (tmp_path / "README.md").write_text("not a shard")
  (tmp_path / "subdir").mkdir()
  with caplog.at_level(logging.INFO):
    assert [os.path.basename(p) for p in files.resolve_files(str(tmp_path))] == [
        "train00.tfrecord", "train01.tfrecord"]
  skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
  assert skipped == [f"{tmp_path}: reading its 2 *.tfrecord files; skipped 2 other files "
                     "(e.g. README.md)"]
  assert sorted(read_ids(config_for(tmp_path))) == sorted(ids)


def test_a_directory_without_tfrecord_files_is_named(tmp_path):
  (tmp_path / "vocabulary.csv").write_text("Index,Name\n")
  with pytest.raises(FileNotFoundError) as raised:
    reader.build_dataset(config_for(tmp_path))
  message = str(raised.value)
  assert message.startswith(f"{tmp_path}: no *.tfrecord file in the directory (1 other files: "
                            "vocabulary.csv)"), message
  assert f"{tmp_path}/*" in message  # how to name shards called otherwise


def test_shards_of_the_other_format_are_named_with_the_flags_that_read_them(tmp_path):
  ids, labels, rgb, audio = random_videos(4, NUM_CLASSES)
  (tmp_path / "video").mkdir()
  write_video_shards(tmp_path / "video", ids, labels, rgb, audio, num_shards=1)
  frame_path = str(tmp_path / "frame" / "frames.tfrecord")
  writer.write_shard(frame_path, [writer.frame_example(
      video_id, [1], {"rgb": np.zeros((2, 1024), np.uint8), "audio": np.zeros((2, 128), np.uint8)})
      for video_id in ids])
  cases = [
      (config_for(tmp_path / "video", frame_level=True, feature_names=("rgb", "audio")),
       f"{tmp_path}/video/train00.tfrecord: record 0 (id 'v000'): 'rgb' needs at least one "
       "frame of 1024 bytes; found 0 frames, 0 of another width: these are video-level shards "
       "(mean_rgb, mean_audio), read as frame-level: drop --frame_level and read them with "
       "--feature_names=mean_rgb,mean_audio"),
      (config_for(tmp_path / "frame"),
       f"{frame_path}: record 0 (id 'v000'): 'mean_rgb' has 0 values, expected 1024: these "
       "are frame-level shards (feature lists rgb, audio): read them with --frame_level "
       "--feature_names=rgb,audio"),
  ]
  for config, expected in cases:
    with pytest.raises(reader.READ_ERRORS) as raised:
      list(reader.build_dataset(config))
    assert str(reader.explain_error(raised.value, config)) == expected


def _write_train_dir(train_dir: pathlib.Path, model: keras.Model, **config_changes) -> None:
  train_dir.mkdir(parents=True, exist_ok=True)
  model_files.save_model(model, str(train_dir / model_files.MODEL_FILE))
  config = {"model": "logistic", "loss": "cross_entropy", "num_classes": NUM_CLASSES,
            "num_outputs": NUM_CLASSES, "feature_names": ["mean_rgb", "mean_audio"],
            "feature_sizes": [1024, 128], "frame_level": False, "id_key": "id"}
  config.update(config_changes)
  artifacts.write_json(str(train_dir / model_files.MODEL_CONFIG_FILE), config)


@pytest.mark.parametrize("key, value", [
    ("num_classes", "50"), ("num_classes", 0), ("num_classes", True),
    ("num_classes", 10 ** 9), ("num_outputs", 2), ("feature_names", "mean_rgb"),
    ("feature_sizes", ["1024", "128"]), ("feature_sizes", [1152]),
    ("frame_level", "false"), ("id_key", 7),
])
def test_a_model_config_value_of_the_wrong_type_or_range_is_named(tmp_path, key, value):
  _write_train_dir(tmp_path, _tiny_model(), **{key: value})
  with pytest.raises(artifacts.ArtifactError) as raised:
    model_files.load_trained(str(tmp_path))
  message = str(raised.value)
  assert message.startswith(f"{tmp_path}/model_config.json: {key!r} is {value!r}"), message
  assert "\n" not in message


@pytest.mark.parametrize("feature_size, num_classes, wrong", [
    (1152, 6, "scores 6 classes;"), (1024, NUM_CLASSES, "takes 1024 features;")])
def test_a_model_that_does_not_fit_its_config_is_refused_by_every_loader(
    tmp_path, feature_size, num_classes, wrong):
  train_dir = tmp_path / "run"
  _write_train_dir(train_dir, _tiny_model(feature_size, num_classes))
  expected = f"{train_dir}/model.keras: {wrong} {train_dir}/model_config.json"
  with pytest.raises(artifacts.ArtifactError, match=expected):
    model_files.load_trained(str(train_dir))  # yt8m-eval and yt8m-predict
  with pytest.raises(artifacts.ArtifactError, match=expected):
    export.export_saved_model(str(train_dir), str(tmp_path / "served"))
  assert sorted(os.listdir(tmp_path)) == ["run"]


def test_prediction_makes_the_checks_evaluation_makes(tmp_path):
  (tmp_path / "shards").mkdir()
  write_video_shards(tmp_path / "shards", *random_videos(6, NUM_CLASSES))
  config = config_for(tmp_path / "shards", include_ids=True, require_labels=False)
  output = str(tmp_path / "out.csv")
  for model, top_k, expected in [
      (_tiny_model(), 0, "Expected top_k >= 1"),
      (_tiny_model(num_classes=NUM_CLASSES + 1), 20, f"scores {NUM_CLASSES + 1} classes; the "
       rf"data has {NUM_CLASSES} \(--num_classes\)"),
      (_tiny_model(feature_size=1024), 20, "takes 1024 features; the data gives 1152")]:
    for run in (lambda: prediction.write_submission(model, config, output, top_k=top_k),
                lambda: evaluation.evaluate(model, config, top_k=top_k)):
      with pytest.raises(ValueError, match=expected):
        run()
  assert sorted(os.listdir(tmp_path)) == ["shards"]


@pytest.mark.parametrize("changes, expected", [
    ({"num_classes": 10 ** 9}, "num_classes must be in [1, 100,000] (YT8M has 3,862"),
    ({"num_classes": "50"}, "Expected an integer num_classes. Received: num_classes='50'"),
    ({"feature_sizes": ("1024", "128")}, "Expected integer feature_sizes"),
])
def test_reader_settings_are_checked_before_any_allocation(tmp_path, changes, expected):
  with pytest.raises(ValueError) as raised:
    config_for(tmp_path, **changes)
  assert expected in str(raised.value)


@pytest.mark.parametrize("name, value, expected", [
    ("focal_gamma", -5.0, "Expected focal_gamma >= 0. Received: --focal_gamma=-5.0"),
    ("asl_gamma_positive", -1.0, "Expected asl_gamma_positive >= 0"),
    ("asl_gamma_negative", -0.5, "Expected asl_gamma_negative >= 0"),
    ("asl_clip", 1.0, "Expected 0 <= asl_clip < 1. Received: --asl_clip=1.0"),
    ("class_balance_beta", -0.1, "Expected 0 <= class_balance_beta < 1"),
    ("focal_gamma", float("nan"), "Expected focal_gamma >= 0"),
])
def test_every_loss_hyperparameter_is_range_checked(name, value, expected):
  with pytest.raises(ValueError) as raised:
    loss_registry.LossConfig(name="cross_entropy", **{name: value})
  assert expected in str(raised.value)
  assert loss_registry.LossConfig(name="focal", focal_gamma=0.0).focal_gamma == 0.0


class _Collect(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages: list[str] = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_scoring_one_new_model_after_another_warns_of_no_retracing(tmp_path):
  # Each model scores two batch shapes (4 and 2 videos): before, every model's first
  # batch traced the shared lambda and its last one retraced it, and TF warned.
  features = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((features, np.zeros((6, 3), np.float32))).batch(4)
  collect = _Collect()
  logger = logging.getLogger("tensorflow")
  logger.addHandler(collect)
  try:
    for seed in range(6):
      keras.utils.set_random_seed(seed)
      model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="sigmoid")])
      scores = np.concatenate([batch[0] for batch in evaluation.score_batches(model, dataset)])
      np.testing.assert_allclose(scores, np.asarray(model(features)), rtol=1e-6)
      forward = evaluation._FORWARD[model]  # pylint: disable=protected-access
      assert forward.experimental_get_tracing_count() == 1
  finally:
    logger.removeHandler(collect)
  assert not [m for m in collect.messages if "retracing" in m], collect.messages


@pytest.fixture
def full_disk(tmp_path):
  """A 1 MB tmpfs (a real full disk), or a skip where it cannot be mounted."""
  with small_tmpfs(tmp_path / "tmpfs", "1m") as mount_point:
    yield mount_point


def test_a_full_disk_under_the_cache_is_one_error_naming_it(tmp_path, full_disk):
  (tmp_path / "shards").mkdir()
  # 400 videos: 1.8 MB of decoded features for a 1 MB disk.
  write_video_shards(tmp_path / "shards", *random_videos(400, NUM_CLASSES), num_shards=2)
  cache = full_disk / "cache"
  with pytest.raises(artifacts.ArtifactError) as raised:
    reader.build_dataset(config_for(tmp_path / "shards", cache=str(cache)))
  assert str(raised.value).startswith(f"{cache}: no space left on the device for the feature "
                                      "cache"), raised.value
  assert os.listdir(cache) == []  # the partial build is gone


def test_a_full_disk_under_the_export_is_one_error_naming_it(tmp_path, full_disk):
  _write_train_dir(tmp_path / "run", _tiny_model(num_classes=400), num_classes=400,
                   num_outputs=400)  # 1.8 MB of weights
  output = full_disk / "served"
  with pytest.raises(artifacts.ArtifactError) as raised:
    export.export_saved_model(str(tmp_path / "run"), str(output))
  assert str(raised.value).startswith(f"{output}: no space left on the device for the "
                                      "SavedModel"), raised.value
  assert os.listdir(full_disk) == []  # nothing half-written, no temporary left


# The binaries, as users run them: several at once, one TensorFlow start-up each.
def _binary(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=binary_env(),
                        capture_output=True, text=True, timeout=300, check=False)


def _error_line(result: subprocess.CompletedProcess) -> str:
  assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if ": error: " in line]
  assert len(errors) == 1, result.stderr[-3000:]
  return errors[0]


def test_the_binaries_refuse_cut_shards_unfit_models_and_full_disks(tmp_path, full_disk):
  path, last_start, _ = write_cut_shards(tmp_path / "eval", 4)
  (tmp_path / "eval" / "vocabulary.csv").write_text("Index,Name\n0,Game\n")  # skipped
  _write_train_dir(tmp_path / "run", _tiny_model())
  _write_train_dir(tmp_path / "unfit", _tiny_model(num_classes=NUM_CLASSES + 1))
  _write_train_dir(tmp_path / "large", _tiny_model(num_classes=400), num_classes=400,
                   num_outputs=400)
  commands = {
      "eval": ["bin.yt8m_eval", f"--eval_data={tmp_path / 'eval'}",
               f"--train_dir={tmp_path / 'run'}"],
      "predict": ["bin.yt8m_predict", f"--input_data={tmp_path / 'eval'}",
                  f"--train_dir={tmp_path / 'unfit'}", f"--output_file={tmp_path / 'out.csv'}"],
      "export": ["bin.yt8m_export", f"--train_dir={tmp_path / 'large'}",
                 f"--output={full_disk / 'served'}"],
  }
  with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
    results = dict(zip(commands, pool.map(lambda args: _binary(*args), commands.values())))
  assert_names_the_cut(_error_line(results["eval"]).split(": error: ", 1)[1], path,
                       last_start, 4)
  assert not (tmp_path / "run" / "eval_metrics.json").exists()
  assert (f"{tmp_path}/unfit/model.keras: scores {NUM_CLASSES + 1} classes; "
          f"{tmp_path}/unfit/model_config.json has {NUM_CLASSES}") in _error_line(
              results["predict"])
  assert not (tmp_path / "out.csv").exists()
  assert f"{full_disk}/served: no space left on the device" in _error_line(results["export"])
  assert os.listdir(full_disk) == []
