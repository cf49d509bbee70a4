"""SIGINT and SIGTERM stop a run at a step boundary, backed up; a rerun resumes only its own run.

The binaries' side (one line, exit status 130 / 143, a real signal to a real process)
is tested in test_resume.py; here the library's, in process, with the signal sent to
this process from inside a callback, at a known step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_videos, write_video_shards
from yt8m_sdnn import artifacts, backup, interrupts, training
from yt8m_sdnn.data import reader
from yt8m_sdnn.experiments import measure
from yt8m_sdnn.subclass import partition, passes

NUM_CLASSES = 5
STEPS_PER_EPOCH = 6  # 96 videos, batch 16


class _SignalAt(keras.callbacks.Callback):
  """Sends `signal_number` to this process after the `step`-th optimizer step (1-based)."""

  def __init__(self, step: int, signal_number: int = signal.SIGINT):
    super().__init__()
    self.step, self.signal_number, self.done = step, signal_number, 0

  def on_train_batch_end(self, batch, logs=None):
    self.done += 1
    if self.done == self.step:
      os.kill(os.getpid(), self.signal_number)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  directory = tmp_path_factory.mktemp("interrupt_data")
  write_video_shards(directory, *random_videos(96, NUM_CLASSES, seed=6))
  return str(directory)


def _reader(shards: str) -> reader.ReaderConfig:
  return reader.ReaderConfig(shards, num_classes=NUM_CLASSES, batch_size=16, training=True,
                             seed=1, deterministic=True)


def _config(train_dir, **changes) -> training.TrainConfig:
  values = dict(train_dir=str(train_dir), model="logistic", num_epochs=3, learning_rate=0.01,
                weight_decay=0.0, seed=1, backup_steps=4)
  values.update(changes)
  return training.TrainConfig(**values)


def _scalars(log_dir) -> list[tuple[str, int, float]]:
  """(tag, step, value) of every scalar TensorBoard got under `log_dir`, in all files."""
  points = []
  for path in sorted(log_dir.glob("**/events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.HasField("simple_value"):
          points.append((value.tag, int(event.step), value.simple_value))
          continue
        number = tf.make_ndarray(value.tensor)
        if number.dtype.kind == "f" and number.shape == ():  # not the model's config text
          points.append((value.tag, int(event.step), float(number)))
  return points


def test_a_signal_waits_for_a_step_boundary_and_a_second_one_stops_at_once():
  default = signal.getsignal(signal.SIGINT)
  default_term = signal.getsignal(signal.SIGTERM)
  with pytest.raises(interrupts.Interrupted) as raised:
    with interrupts.deferred():
      os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
      assert interrupts.pending() == signal.SIGTERM  # waits: nothing raised yet
      os.kill(os.getpid(), signal.SIGINT)
  assert raised.value.at_once and raised.value.exit_status == 130  # 128 + 2
  assert str(raised.value) == "stopped at once by a second SIGINT"
  assert interrupts.pending() is None and signal.getsignal(signal.SIGINT) is default

  # A signal that came after the last check is raised when the block ends.
  with pytest.raises(interrupts.Interrupted) as raised:
    with interrupts.deferred():
      os.kill(os.getpid(), signal.SIGTERM)
  assert raised.value.exit_status == 143 and not raised.value.at_once  # 128 + 15

  # Outside a step loop it stops where it lands.
  with pytest.raises(interrupts.Interrupted, match="^stopped by SIGTERM$"):
    with interrupts.handling():
      os.kill(os.getpid(), signal.SIGTERM)
      pytest.fail("the signal did not stop the block")
  assert signal.getsignal(signal.SIGTERM) is default_term


def test_only_the_temporaries_of_atomic_writes_count_as_orphans(tmp_path):
  # The name `artifacts.atomic_write_path` really gives its temporary file.
  with pytest.raises(RuntimeError):
    with artifacts.atomic_write_path(str(tmp_path / "epoch-001.weights.h5"),
                                     suffix=".weights.h5") as temporary:
      name = os.path.basename(temporary)
      raise RuntimeError("killed")  # the helper deletes it; a SIGKILL would not
  for orphan in (name, ".model.keras.ab12cd_9.tmp.keras", ".plan.npz.zz99yy88.tmp.npz"):
    (tmp_path / orphan).write_text("half")
  for kept in (".lock", ".plan.npz.lock", "model.keras", ".notes.tmp"):
    (tmp_path / kept).write_text("kept")
  (tmp_path / ".x.abcdefgh.tmp").mkdir()  # a directory is never a temporary file
  assert interrupts.orphaned_target(name) == "epoch-001.weights.h5"
  assert interrupts.remove_orphaned_temporaries(str(tmp_path), ("plan.npz",)) == 1
  assert interrupts.remove_orphaned_temporaries(str(tmp_path)) == 2
  assert sorted(os.listdir(tmp_path)) == sorted(
      [".lock", ".plan.npz.lock", "model.keras", ".notes.tmp", ".x.abcdefgh.tmp"])
  assert interrupts.remove_orphaned_temporaries(str(tmp_path / "absent")) == 0


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
  """An uninterrupted deterministic run: (result, its train_dir)."""
  train_dir = tmp_path_factory.mktemp("reference")
  return training.train(_config(train_dir), _reader(shards)), train_dir


@pytest.fixture(scope="module")
def stopped(shards, tmp_path_factory):
  """A run stopped by SIGINT after its 9th step (epoch 2, step 3): (error, train_dir)."""
  train_dir = tmp_path_factory.mktemp("stopped")
  with pytest.raises(interrupts.Interrupted) as raised:
    training.train(_config(train_dir), _reader(shards), extra_callbacks=[_SignalAt(9)])
  return raised.value, train_dir


def test_sigint_backs_up_the_step_it_stopped_at(stopped):
  error, train_dir = stopped
  assert error.exit_status == 130
  assert str(error) == (f"stopped by SIGINT at epoch 2/3, step 3/{STEPS_PER_EPOCH}; backed up "
                        f"in {train_dir}/backup: the same command resumes there")
  state = backup.read_backup_state(str(train_dir / "backup"))
  assert (state["epoch"], state["step"], state["total_steps"]) == (1, 3, 9)
  # The epoch's running loss: Keras' Mean over 3 batches of 16 (sum, count 48).
  assert len(state["metrics"]) == 2 and state["metrics"][1] == 48.0
  assert set(state["history"]) == {"loss", "examples_per_second", "learning_rate"}
  assert len(state["history"]["loss"]) == 1  # the epoch done
  assert not (train_dir / "model.keras").exists()


def test_the_resumed_run_equals_an_uninterrupted_one(shards, reference, stopped, tmp_path):
  expected, reference_dir = reference
  train_dir = tmp_path / "run"
  shutil.copytree(stopped[1], train_dir)
  # What a SIGKILL mid-write leaves: hidden temporaries, which the next run removes.
  orphans = [train_dir / "checkpoints" / ".epoch-002.weights.h5.k1ll3d00.tmp.weights.h5",
             train_dir / ".model.keras.k1ll3d00.tmp.keras",
             train_dir / "backup" / ".backup-epoch0001-step00000004.weights.h5.k1ll3d00.tmp"
             ".weights.h5"]
  for orphan in orphans:
    orphan.write_bytes(b"half a file")
  (train_dir / ".notes").write_text("the user's")

  result = training.train(_config(train_dir), _reader(shards))
  assert result.steps == expected.steps == 3 * STEPS_PER_EPOCH
  # Every epoch's loss, the resumed one included, is an uninterrupted run's: its mean
  # counts the 3 steps before the stop (restored with the backup) and the 3 after.
  assert result.history["loss"] == expected.history["loss"]
  assert result.history["learning_rate"] == expected.history["learning_rate"]
  recorded = json.loads((train_dir / training.TRAIN_RESULT_FILE).read_text())["history"]
  assert recorded["loss"] == expected.history["loss"]
  for want, got in zip(expected.model.get_weights(), result.model.get_weights()):
    np.testing.assert_array_equal(got, want)
  assert not any(orphan.exists() for orphan in orphans)
  assert (train_dir / ".notes").exists() and not (train_dir / "backup").exists()

  # TensorBoard: the same points, each once, though two processes wrote them.
  points, want = _scalars(train_dir / "logs"), _scalars(reference_dir / "logs")
  keys = [(tag, step) for tag, step, _ in points]
  assert len(keys) == len(set(keys)), sorted(keys)
  assert sorted(keys) == sorted((tag, step) for tag, step, _ in want)
  for tag in ("epoch_loss", "batch_loss", "epoch_learning_rate", "batch_learning_rate"):
    assert sorted(p for p in points if p[0] == tag) == sorted(p for p in want if p[0] == tag)
  # Per-step scalars every 10 steps, at the global step, as the YT8M starter writes them.
  assert sorted(step for tag, step, _ in points if tag == "batch_loss") == [10]
  assert {"batch_examples_per_second", "epoch_examples_per_second"} <= {p[0] for p in points}


def test_a_second_signal_stops_at_once_naming_the_last_backup(shards, tmp_path):
  with pytest.raises(interrupts.Interrupted) as raised:  # the second lands inside step 9
    training.train(_config(tmp_path / "run"), _reader(shards),
                   extra_callbacks=[_SignalAt(9), _SignalAt(9)])
  # Step 9 (epoch 2, step 3) was not backed up; the last backup (every 4 steps of an
  # epoch, and at its end) is the end of epoch 1.
  assert str(raised.value) == (
      "stopped at once by a second SIGINT (the same command resumes from the last backup, "
      f"at the end of epoch 1/3, in {tmp_path}/run/backup)")
  state = backup.read_backup_state(str(tmp_path / "run" / "backup"))
  assert (state["epoch"], state["step"]) == (1, 0)


def _edited(stopped_dir, tmp_path, **changes):
  train_dir = tmp_path / "edited"
  shutil.copytree(stopped_dir, train_dir)
  path = train_dir / "backup" / backup.BACKUP_STATE_FILE
  path.write_text(json.dumps(dict(json.loads(path.read_text()), **changes)))
  return train_dir


@pytest.mark.parametrize("changes, num_epochs, message", [
    # Killed mid-epoch 2 of 3, rerun with --num_epochs=1: it would save mid-epoch weights.
    ({}, 1, "is at epoch 2, step 3, beyond --num_epochs=1; resuming it would save a model "
            "of another run. Rerun with --num_epochs=2 or more to resume it"),
    ({"epoch": 99}, 3, "beyond --num_epochs=3"),
    ({"step": 1000000}, 3, f"step 1000000 of epoch 2 is past the epoch's {STEPS_PER_EPOCH} "
                           "steps"),
    ({"step": -7}, 3, "step -7 is not a whole number >= 0"),
    ({"step": 2.5}, 3, "step 2.5 is not a whole number"),
    ({"step": 4}, 3, "its counters disagree (epoch 2, step 4, 9 steps in all, epochs of 6"),
])
def test_a_backup_outside_its_run_is_refused_before_any_step(shards, stopped, tmp_path,
                                                             changes, num_epochs, message):
  train_dir = _edited(stopped[1], tmp_path, **changes)
  before = (train_dir / "backup" / backup.BACKUP_STATE_FILE).read_text()
  with pytest.raises(backup.BackupMismatchError) as raised:
    training.train(_config(train_dir, num_epochs=num_epochs), _reader(shards),
                   extra_callbacks=[_SignalAt(1)])  # a step taken would stop the run
  assert message in str(raised.value)
  assert str(raised.value).endswith(f"--overwrite, or delete {train_dir}/backup.")
  assert (train_dir / "backup" / backup.BACKUP_STATE_FILE).read_text() == before
  assert not (train_dir / "model.keras").exists()


def _leave_backup_behind(train_dir, **state):
  """What a run killed while deleting its backup leaves: a state naming deleted weights."""
  path = train_dir / "backup" / backup.BACKUP_STATE_FILE
  path.parent.mkdir()
  path.write_text(json.dumps(dict({"epoch": 3, "step": 0, "weights": "gone.weights.h5"},
                                  **state)))
  return path


def test_a_finished_run_killed_while_deleting_its_backup_is_complete(shards, reference,
                                                                     tmp_path):
  train_dir = tmp_path / "finished"
  shutil.copytree(reference[1], train_dir)
  record = json.loads((train_dir / training.TRAIN_RESULT_FILE).read_text())
  _leave_backup_behind(train_dir, run_id=record["run_id"])
  result = training.train(_config(train_dir), _reader(shards))
  assert result.steps == record["steps"] and result.history["loss"] == record["history"]["loss"]
  assert not (train_dir / "backup").exists()

  # Without its state file, too: nothing is left to resume.
  (train_dir / "backup").mkdir()
  (train_dir / "backup" / "backup-epoch0003-step00000000.weights.h5").write_bytes(b"")
  assert training.train(_config(train_dir), _reader(shards)).steps == record["steps"]
  assert not (train_dir / "backup").exists()

  # A backup of another run (a retraining begun with --overwrite) is no leftover.
  _leave_backup_behind(train_dir, run_id="another run")
  with pytest.raises(artifacts.ArtifactError, match="'gone.weights.h5', which is missing"):
    training.train(_config(train_dir), _reader(shards))

  # Records from before run ids: the record is newer than the leftover state.
  state_path = train_dir / "backup" / backup.BACKUP_STATE_FILE
  state_path.write_text(json.dumps({"epoch": 3, "step": 0, "weights": "gone.weights.h5"}))
  result_path = train_dir / training.TRAIN_RESULT_FILE
  result_path.write_text(json.dumps({k: v for k, v in record.items() if k != "run_id"}))
  os.utime(state_path, ns=(1, 1))
  assert training.train(_config(train_dir), _reader(shards)).steps == record["steps"]


def test_a_theta_backup_is_refused_with_another_tau_or_initial_model(shards, reference,
                                                                     tmp_path, monkeypatch):
  train_dir = str(tmp_path / "theta")
  config = _config(train_dir, num_epochs=1)

  def measure_theta(tau, init_model=None):
    return measure.measure_neglection(config, _reader(shards), 1.0, tau=tau, top_k_classes=2,
                                      num_steps=8, init_model=init_model)

  stopping = functools.partial(training.train, extra_callbacks=[_SignalAt(5)])
  monkeypatch.setattr(measure.training, "train", stopping)
  with pytest.raises(interrupts.Interrupted, match="at epoch 1/1, step 5/8"):
    measure_theta(tau=2)
  monkeypatch.undo()
  with pytest.raises(backup.BackupMismatchError, match="--tau: then 2, now 4"):
    measure_theta(tau=4)
  initial = str(reference[1] / "model.keras")
  with pytest.raises(backup.BackupMismatchError, match="--init_model: then null, now "):
    measure_theta(tau=2, init_model=initial)
  resumed = measure_theta(tau=2)  # its own settings: resumed, 4 windows of 2 iterations
  assert [window["end_iteration"] for window in resumed["history"]] == [2, 4, 6, 8]


def test_partition_passes_stop_between_chunks_and_write_nothing(shards, tmp_path,
                                                                monkeypatch):
  monkeypatch.setattr(passes, "CHUNK_BATCHES", 1)
  config = dataclasses.replace(_reader(shards), training=False, num_epochs=1)
  sent = []

  def signal_at_third_batch(features, labels):
    def send():
      sent.append(1)
      if len(sent) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      return 0
    with tf.control_dependencies([tf.py_function(send, [], tf.int32)]):
      return tf.identity(features), tf.identity(labels)

  dataset = reader.build_dataset(config).map(signal_at_third_batch)
  with pytest.raises(interrupts.Interrupted) as raised:
    partition.partition_dataset(dataset, selected=[1, 3])
  assert raised.value.exit_status == 143
  assert str(raised.value).startswith("stopped by SIGTERM during Algorithm 1, pass 1 (mean); "
                                      "nothing was written: the same command runs the passes "
                                      "again")
  assert len(sent) < STEPS_PER_EPOCH  # stopped inside the pass, not after it

  # The next run removes a killed run's half-written plan (and no other file).
  output = tmp_path / "plan.npz"
  (tmp_path / ".plan.npz.k1ll3d00.tmp.npz").write_bytes(b"half a plan")
  (tmp_path / ".other.npz.k1ll3d00.tmp.npz").write_bytes(b"another writer's")
  plan = partition.partition_shards(config, [1, 3], output=str(output))
  assert sorted(os.listdir(tmp_path)) == [".other.npz.k1ll3d00.tmp.npz"]
  assert plan.selected.tolist() == [1, 3]

