"""Resume checks, one writer per directory, the NaN policy and strict artifact reading."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import signal
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from conftest import ROOT, binary_env, random_videos, write_video_shards
from yt8m_sdnn import artifacts, backup, callbacks, locking, models, training
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.data import reader
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.subclass import plan as plan_lib

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  directory = tmp_path_factory.mktemp("reliability_data")
  write_video_shards(directory, *random_videos(96, NUM_CLASSES, seed=4))
  return str(directory)


def _reader(shards: str) -> reader.ReaderConfig:
  return reader.ReaderConfig(shards, num_classes=NUM_CLASSES, batch_size=16, training=True,
                             seed=1, deterministic=True)


def _config(train_dir, **changes) -> training.TrainConfig:
  values = dict(train_dir=str(train_dir), model="logistic", num_epochs=2, learning_rate=0.01,
                weight_decay=0.0, seed=1, backup_steps=2)
  values.update(changes)
  return training.TrainConfig(**values)


class _Crash(keras.callbacks.Callback):
  """Stands in for a killed process: raises after `steps` optimizer steps."""

  def __init__(self, steps: int):
    super().__init__()
    self.steps, self.done = steps, 0

  def on_train_batch_end(self, batch, logs=None):
    self.done += 1
    if self.done == self.steps:
      raise KeyboardInterrupt("crash")


def _crash(config, reader_config, steps: int = 9) -> None:
  with pytest.raises(KeyboardInterrupt):
    training.train(config, reader_config, extra_callbacks=[_Crash(steps)])
  assert backup.read_backup_state(os.path.join(config.train_dir, "backup")) is not None


@pytest.mark.parametrize("changes, flag", [
    ({"learning_rate": 0.02}, "--learning_rate"),
    ({"seed": 2}, "--seed"),
    ({"optimizer": "sgd"}, "--optimizer"),
    ({"model": "cnn"}, "--model"),
])
def test_resume_refuses_a_backup_made_with_other_settings(shards, tmp_path, changes, flag):
  config = _config(tmp_path / "run")
  _crash(config, _reader(shards))
  with pytest.raises(backup.BackupMismatchError) as raised:
    training.train(_config(tmp_path / "run", **changes), _reader(shards))
  message = str(raised.value)
  assert f"{tmp_path}/run/backup" in message and flag in message and "--overwrite" in message
  assert not (tmp_path / "run" / "model.keras").exists()  # nothing trained over it


def test_resume_refuses_other_training_data(shards, tmp_path):
  _crash(_config(tmp_path / "run"), _reader(shards))
  one_shard = os.path.join(shards, "train00.tfrecord")
  with pytest.raises(backup.BackupMismatchError, match="--train_data"):
    training.train(_config(tmp_path / "run"), _reader(one_shard))


def test_a_finished_run_reused_with_other_settings_is_refused(shards, tmp_path):
  """A finished row records its settings; reusing it as another setting's row is refused."""
  config = _config(tmp_path / "run", num_epochs=1)
  training.train(config, _reader(shards))
  settings = artifacts.read_json(str(tmp_path / "run" / training.TRAIN_RESULT_FILE))["settings"]
  assert settings["learning_rate"] == 0.01 and settings["optimizer"] == "adam"
  # Raising a cap is no other run; the same settings pass.
  training.check_finished_settings(dataclasses.replace(config, num_epochs=5, patience=9),
                                   _reader(shards))
  for changes, flag in (({"learning_rate": 0.02}, "--learning_rate: then 0.01, now 0.02"),
                        ({"weight_decay": 0.1, "optimizer": "adamw"}, "--weight_decay")):
    with pytest.raises(backup.SettingsMismatchError, match="--overwrite") as raised:
      training.check_finished_settings(dataclasses.replace(config, **changes), _reader(shards),
                                       overwrite_hint="rerun with --overwrite")
    assert flag in str(raised.value) and f"{tmp_path}/run" in str(raised.value)
  one_shard = os.path.join(shards, "train00.tfrecord")
  with pytest.raises(backup.SettingsMismatchError, match="--train_data"):
    training.check_finished_settings(config, _reader(one_shard))
  # A pipeline's work dir reused with another learning rate: the row is not reported as
  # if trained with it.
  data = _reader(shards)
  run = pipeline.PipelineConfig(work_dir=str(tmp_path / "work"), train_reader=data,
                                eval_reader=dataclasses.replace(data, training=False),
                                train=config, model="logistic", stages=("baseline",))
  first = pipeline.run(run)["baseline"]
  assert pipeline.run(run)["baseline"] == first  # same settings: read back
  other = dataclasses.replace(run, train=dataclasses.replace(config, learning_rate=0.02))
  with pytest.raises(backup.SettingsMismatchError, match="--learning_rate"):
    pipeline.run(other)
  pipeline.run(dataclasses.replace(other, overwrite=True))  # trains it afresh
  assert artifacts.read_json(str(tmp_path / "work" / "baseline" / training.TRAIN_RESULT_FILE))[
      "settings"]["learning_rate"] == 0.02
  assert pipeline.run(other)["baseline"]["gap"] != first["gap"]


def test_a_run_recorded_before_a_setting_existed_had_its_default(shards, tmp_path):
  """`train_result.json` and backups from before `subclass_merge` was recorded: they were
  trained with "max", so they are reused as "max" and refused as "odds_sum"."""
  config = _config(tmp_path / "run", num_epochs=1)
  training.train(config, _reader(shards))
  path = str(tmp_path / "run" / training.TRAIN_RESULT_FILE)
  record = artifacts.read_json(path)
  del record["settings"]["subclass_merge"]
  artifacts.write_json(path, record)
  training.check_finished_settings(config, _reader(shards))
  with pytest.raises(backup.SettingsMismatchError, match="--subclass_merge: then \"max\""):
    training.check_finished_settings(dataclasses.replace(config, subclass_merge="odds_sum"),
                                     _reader(shards))


def test_overwrite_discards_the_backup_and_trains_afresh(shards, tmp_path):
  _crash(_config(tmp_path / "run"), _reader(shards))
  fresh = training.train(_config(tmp_path / "run", learning_rate=0.02, overwrite=True),
                         _reader(shards))
  assert fresh.steps == 12  # 2 epochs of 96 / 16, none of the crashed run's
  assert not (tmp_path / "run" / "backup").exists()


def test_resumed_cnn_is_bit_identical_dropout_included(shards, tmp_path):
  """Dropout's seed generator state travels in the backup (Keras does not save it)."""
  settings = dict(model="cnn", num_epochs=1, seed=5, backup_steps=2)
  reference = training.train(_config(tmp_path / "reference", **settings), _reader(shards))
  _crash(_config(tmp_path / "resumed", **settings), _reader(shards), steps=3)
  state = backup.read_backup_state(str(tmp_path / "resumed" / "backup"))
  assert state["step"] == 2 and len(state["seed_states"]) == 1
  resumed = training.train(_config(tmp_path / "resumed", **settings), _reader(shards))
  assert resumed.steps == reference.steps == 6
  for expected, got in zip(reference.model.get_weights(), resumed.model.get_weights()):
    np.testing.assert_array_equal(got, expected)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
  with locking.exclusive(str(tmp_path), "training run"):
    with pytest.raises(locking.DirectoryInUseError) as raised:
      with locking.exclusive(str(tmp_path), "training run"):
        pass
  assert f"{tmp_path}: in use by another training run (process {os.getpid()})" in str(
      raised.value)
  with locking.exclusive(str(tmp_path)):  # released when the first one ended
    pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from yt8m_sdnn import locking\n"
       f"with locking.exclusive({str(tmp_path)!r}):\n  print('locked', flush=True); "
       "time.sleep(600)"], cwd=ROOT, env=binary_env(), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(locking.DirectoryInUseError, match=f"process {holder.pid}"):
      with locking.exclusive(str(tmp_path)):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with locking.exclusive(str(tmp_path)):
      pass
  finally:
    holder.kill()
    holder.wait()


def test_train_binary_refuses_a_locked_train_dir_at_once(shards, tmp_path):
  with locking.exclusive(str(tmp_path / "run")):
    result = subprocess.run(
        [sys.executable, "-m", "bin.yt8m_train", f"--train_data={shards}",
         f"--train_dir={tmp_path / 'run'}", "--model=logistic", f"--num_classes={NUM_CLASSES}"],
        cwd=ROOT, env=binary_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert f"{tmp_path / 'run'}: in use by another training run (process {os.getpid()})" in (
      result.stderr)


def test_a_non_finite_loss_stops_training_and_saves_nothing(shards, tmp_path):
  def nan_loss(y_true, y_pred):
    return keras.ops.sum(y_pred) * math.nan

  with pytest.raises(callbacks.NonFiniteLossError, match="at epoch 1, step 1 of it"):
    training.train(_config(tmp_path / "run"), _reader(shards), lambda: training.Trainable(
        models.build_model("logistic", _reader(shards).feature_size, NUM_CLASSES),
        loss=nan_loss))
  assert not (tmp_path / "run" / "model.keras").exists()
  assert not (tmp_path / "run" / "backup").exists()  # no backup of NaN weights either


def test_a_model_with_non_finite_weights_is_not_saved(tmp_path):
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
  model.layers[0].kernel.assign(np.full((3, 2), np.inf, np.float32))
  with pytest.raises(artifacts.ArtifactError, match="out/kernel holds NaN or infinite"):
    training.save_model(model, str(tmp_path / "model.keras"))
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("changes", [
    {"learning_rate": math.nan}, {"learning_rate": math.inf}, {"weight_decay": math.nan},
    {"steps_per_epoch": 0}, {"steps_per_epoch": -2}, {"learning_rate_decay": math.nan},
])
def test_train_config_refuses_non_finite_and_empty_settings(tmp_path, changes):
  name = next(iter(changes))
  with pytest.raises(ValueError, match=name):
    _config(tmp_path, **changes)


def test_binaries_refuse_non_finite_float_flags(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "bin.yt8m_train", f"--train_data={tmp_path}",
       f"--train_dir={tmp_path / 'run'}", "--learning_rate=nan"],
      cwd=ROOT, env=binary_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "--learning_rate=nan: must be a finite number" in result.stderr
  assert not (tmp_path / "run").exists()


def test_pipeline_checks_every_setting_before_any_stage(tmp_path):
  train = training.TrainConfig(train_dir="")
  data = reader.ReaderConfig(str(tmp_path))
  with pytest.raises(ValueError, match="top_k=0"):
    pipeline.PipelineConfig(work_dir=str(tmp_path), train_reader=data, eval_reader=data,
                            train=train, top_k=0)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("selected", [None, 2**70, "abc", [1.7, 2.2], [True, False], 7,
                                      ["3", "4"], [1, 1], [-1], [5], []])
def test_neglection_file_schema_is_checked(tmp_path, selected):
  path = tmp_path / "neglection.json"
  path.write_text(json.dumps({"selected": selected, "num_classes": NUM_CLASSES}))
  with pytest.raises(artifacts.ArtifactError, match=f"{path}: 'selected'"):
    selection.read_selected(str(path), NUM_CLASSES)


def test_neglection_file_with_valid_ids_reads_back(tmp_path):
  path = tmp_path / "neglection.json"
  path.write_text(json.dumps({"selected": [3, 0], "num_classes": NUM_CLASSES}))
  assert selection.read_selected(str(path), NUM_CLASSES) == [3, 0]


@pytest.mark.parametrize("array", ["mean", "anchors", "thresholds"])
def test_plan_with_non_finite_floats_is_refused(array):
  values = dict(num_classes=4, feature_size=3, feature_names=("f",), selected=[1],
                mean=np.zeros(3), anchors=np.ones((1, 2, 3)), subclass_counts=[[2, 3]],
                thresholds=np.zeros(1))
  values[array] = np.where(np.ones_like(values[array], bool), np.nan, 0.0)
  with pytest.raises(ValueError, match=f"'{array}' holds NaN"):
    plan_lib.SubclassPlan(**values)


def test_disk_full_leaves_nothing_and_names_the_file(tmp_path):
  target = tmp_path / "epoch-002.weights.h5"
  with pytest.raises(artifacts.ArtifactError) as raised:
    with artifacts.atomic_write_path(str(target), suffix=".weights.h5") as temporary:
      with open(temporary, "wb") as stream:
        stream.write(b"\0" * 4096)
      raise OSError(errno.ENOSPC, "No space left on device")
  assert f"{target}: no space left on the device" in str(raised.value)
  assert os.listdir(tmp_path) == []


def test_random_bytes_model_is_named_as_not_an_archive(tmp_path):
  (tmp_path / "model.keras").write_bytes(os.urandom(256))
  with pytest.raises(artifacts.ArtifactError, match="not a Keras .keras archive"):
    training.load_trained_model(str(tmp_path))


def test_model_config_without_a_key_is_named(tmp_path):
  (tmp_path / "model_config.json").write_text(json.dumps({"num_classes": 3}))
  with pytest.raises(artifacts.ArtifactError, match=r"model_config.json: lacks \['num_outputs'"):
    training.load_model_config(str(tmp_path))


def test_checkpoints_are_written_atomically(shards, tmp_path, monkeypatch):
  """A checkpoint whose write fails leaves no file behind (Keras' own writes in place)."""
  original = keras.Model.save_weights

  def failing(self, path, *args, **kwargs):
    if os.path.basename(os.path.dirname(str(path))) == "checkpoints":
      with open(path, "wb") as stream:
        stream.write(b"truncated")
      raise OSError(errno.ENOSPC, "No space left on device")
    return original(self, path, *args, **kwargs)

  monkeypatch.setattr(keras.Model, "save_weights", failing)
  with pytest.raises(artifacts.ArtifactError, match="epoch-001.weights.h5: no space left"):
    training.train(_config(tmp_path / "run", num_epochs=1), _reader(shards))
  assert os.listdir(tmp_path / "run" / "checkpoints") == []


def test_output_file_that_is_a_directory_is_refused_before_the_pass(tmp_path):
  with pytest.raises(artifacts.ArtifactError, match=f"--output_file={tmp_path}: is a directory"):
    artifacts.check_output_file(str(tmp_path), "--output_file")



def test_train_binary_refuses_to_replace_a_finished_model_without_overwrite(shards, tmp_path):
  command = [sys.executable, "-m", "bin.yt8m_train", f"--train_data={shards}",
             f"--train_dir={tmp_path / 'run'}", "--model=logistic",
             f"--num_classes={NUM_CLASSES}", "--num_epochs=1", "--batch_size=32"]
  run = lambda *extra: subprocess.run(command + list(extra), cwd=ROOT, env=binary_env(),
                                      capture_output=True, text=True, timeout=300)
  assert run().returncode == 0
  first = (tmp_path / "run" / "model.keras").stat().st_mtime_ns
  refused = run("--model=cnn")
  assert refused.returncode == 1
  assert (f"{tmp_path / 'run' / 'model.keras'}: a finished model (logistic) is already there; "
          "pass --overwrite") in refused.stderr
  assert (tmp_path / "run" / "model.keras").stat().st_mtime_ns == first
  assert run("--overwrite").returncode == 0
  assert (tmp_path / "run" / "model.keras").stat().st_mtime_ns != first


def test_model_naming_code_outside_keras_is_one_line(tmp_path):
  with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
    archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    archive.writestr("config.json", json.dumps(
        {"module": "os", "class_name": "system", "config": {}, "registered_name": None}))
    archive.writestr("model.weights.h5", b"")
  with pytest.raises(artifacts.ArtifactError, match=f"{tmp_path}/model.keras: cannot load "
                     r"the model \(\w+: .*\)\. Safe mode"):
    training.load_trained_model(str(tmp_path))


def test_a_shard_named_twice_is_refused(shards):
  from yt8m_sdnn.data.files import resolve_files
  one = os.path.join(shards, "train00.tfrecord")
  with pytest.raises(ValueError, match=f"names {one} more than once"):
    resolve_files(f"{one},{shards}")


def test_a_record_of_the_other_release_is_named_where_ids_are_read(tmp_path):
  ids, labels, rgb, audio = random_videos(6, NUM_CLASSES, seed=1)
  write_video_shards(tmp_path, ids[:3], labels[:3], rgb[:3], audio[:3], num_shards=1)
  (tmp_path / "train00.tfrecord").rename(tmp_path / "a.tfrecord")
  write_video_shards(tmp_path, ids[3:], labels[3:], rgb[3:], audio[3:], num_shards=1,
                     id_key="video_id")  # 2017 format
  config = reader.ReaderConfig(str(tmp_path), num_classes=NUM_CLASSES, include_ids=True)
  with pytest.raises(reader.READ_ERRORS) as raised:
    for _ in reader.build_dataset(config):
      pass
  message = str(reader.explain_error(raised.value, config))  # as every consumer does
  assert f"{tmp_path}/train00.tfrecord: record 0" in message
  assert "has no 'id' video id" in message and "--id_key=video_id" in message
  # Training reads no ids: the same shards train.
  for _ in reader.build_dataset(dataclasses.replace(config, include_ids=False)):
    pass


def test_pipeline_refuses_a_work_dir_in_use(shards, tmp_path):
  data = _reader(shards)
  config = pipeline.PipelineConfig(work_dir=str(tmp_path / "work"), train_reader=data,
                                   eval_reader=data, train=_config(""), stages=("baseline",))
  with locking.exclusive(str(tmp_path / "work")):
    with pytest.raises(locking.DirectoryInUseError, match="in use by another yt8m-sdnn run"):
      pipeline.run(config)
  assert not (tmp_path / "work" / "baseline").exists()


def test_partition_binary_refuses_an_output_in_use(shards, tmp_path):
  (tmp_path / "neglection.json").write_text(json.dumps({"selected": [1], "num_classes": 5}))
  with locking.exclusive(str(tmp_path), lock_name=".plan.npz.lock"):
    result = subprocess.run(
        [sys.executable, "-m", "bin.yt8m_partition", f"--train_data={shards}",
         f"--neglection={tmp_path / 'neglection.json'}", f"--output={tmp_path / 'plan.npz'}",
         f"--num_classes={NUM_CLASSES}"],
        cwd=ROOT, env=binary_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert f"{tmp_path}: in use by another yt8m-partition run" in result.stderr
  assert not (tmp_path / "plan.npz").exists()


def test_write_json_writes_undefined_numbers_as_null(tmp_path):
  """One place turns NaN/inf and numpy values into JSON every reader accepts."""
  path = str(tmp_path / "payload.json")
  artifacts.write_json(path, {"ap": [0.5, math.nan, np.float32(0.25)], "rho": np.float64("nan"),
                              "bound": math.inf, "counts": np.arange(3), "n": np.int64(4)})
  text = (tmp_path / "payload.json").read_text()
  assert "NaN" not in text and "Infinity" not in text
  assert json.loads(text) == {"ap": [0.5, None, 0.25], "rho": None, "bound": None,
                              "counts": [0, 1, 2], "n": 4}
