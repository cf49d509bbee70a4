"""Logs a user can read in a file: plain progress lines, no progress-bar bytes, quiet start-up."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, binary_env, random_videos, write_video_shards
from yt8m_sdnn import callbacks

NUM_CLASSES = 5


def test_progress_lines_learn_the_epoch_length_and_give_examples_per_second():
  features = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
  labels = (features[:, :NUM_CLASSES] > 0).astype("float32")[:, :NUM_CLASSES]
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="sigmoid")])
  model.compile(optimizer="sgd", loss="binary_crossentropy")
  lines = []
  progress = callbacks.ProgressLog(num_epochs=2, every_steps=3, write=lines.append)
  model.fit(features, labels[:, :4], batch_size=8, epochs=2, verbose=0, callbacks=[progress])
  assert lines[0].startswith("epoch 1/2, step 3, loss ")
  assert "epoch 1/2, step 8, loss" in lines[2] and "epoch done in 0:00:0" in lines[2]
  # The first epoch's length is the second's total, with the time left in it.
  assert lines[3].startswith("epoch 2/2, step 3/8, loss ") and "left in the epoch" in lines[3]
  assert all("steps/s" in line for line in lines)  # no example counter given


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  directory = tmp_path_factory.mktemp("progress_data")
  write_video_shards(directory, *random_videos(96, NUM_CLASSES, seed=3))
  return str(directory)


def test_a_binary_piped_to_a_file_writes_plain_lines(shards, tmp_path):
  log = tmp_path / "train.log"
  env = binary_env()
  del env["TF_CPP_MIN_LOG_LEVEL"]  # the binaries' own default: TensorFlow's start-up quiet
  with open(log, "w") as stream:
    result = subprocess.run(
        [sys.executable, "-m", "bin.yt8m_train", f"--train_data={shards}",
         f"--train_dir={tmp_path / 'run'}", "--model=logistic", "--num_epochs=2",
         f"--num_classes={NUM_CLASSES}", "--batch_size=16", "--log_every=2"],
        cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT, timeout=300)
  text = log.read_text()
  assert result.returncode == 0, text[-3000:]
  assert "\r" not in text and "\x1b[" not in text and "\b" not in text
  # The epoch's total and the time left from the first epoch on: 96 videos / 16 a batch.
  first = next(line for line in text.splitlines() if "epoch 1/2, step 2/6, loss" in line)
  assert "examples/s" in first and "left in the epoch" in first
  assert "epoch 2/2, step 4/6, loss" in text
  for start_up in ("oneDNN", "cuInit", "cuda drivers", "absl::InitializeLog"):
    assert start_up not in text
  # TensorBoard gets the epoch's learning rate and throughput beside the loss, and the
  # same every 10 steps (12 steps: one point), as the YT8M starter writes them.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tags = set()
  for path in (tmp_path / "run" / "logs" / "train").glob("events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      tags.update(value.tag for value in event.summary.value)
  assert {"epoch_loss", "epoch_learning_rate", "epoch_examples_per_second", "batch_loss",
          "batch_learning_rate", "batch_examples_per_second"} <= tags, tags


def test_tensorflow_start_up_lines_come_back_when_asked(tmp_path):
  env = binary_env(TF_CPP_MIN_LOG_LEVEL="0")
  result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "yt8m_eval.py"), "--help"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert "Traceback" not in result.stderr
  assert "oneDNN" in result.stderr or "cuda" in result.stderr.lower()


def test_evaluation_and_prediction_passes_log_their_progress(shards, tmp_path, monkeypatch):
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn import evaluation, models, prediction  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn.data import reader  # pylint: disable=import-outside-toplevel
  lines = []
  monkeypatch.setattr(absl_logging, "info", lambda text, *args: lines.append(text % args))
  monkeypatch.setattr(evaluation, "PROGRESS_SECONDS", 0.0)
  monkeypatch.setattr(prediction, "PROGRESS_SECONDS", 0.0)
  config = reader.ReaderConfig(shards, num_classes=NUM_CLASSES, batch_size=32)
  model = models.build_model("logistic", config.feature_size, NUM_CLASSES)
  evaluation.evaluate(model, config)
  assert "evaluation: 96 videos scored" in lines[-1] and "videos/s" in lines[-1]
  prediction.write_submission(model, reader.ReaderConfig(
      shards, num_classes=NUM_CLASSES, batch_size=32, include_ids=True),
      str(tmp_path / "out.csv"))
  assert "prediction: 96 videos written" in lines[-1]


def test_the_terminal_bar_knows_the_epoch_total_after_the_first_epoch(capsys):
  features = np.random.default_rng(1).normal(size=(64, 4)).astype("float32")
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="sigmoid")])
  model.compile(optimizer="sgd", loss="binary_crossentropy")
  progress = callbacks.TerminalProgress(num_epochs=2)
  for epoch in range(2):  # as `train` runs: one `fit` per epoch
    model.fit(features, (features > 0).astype("float32"), batch_size=8, initial_epoch=epoch,
              epochs=epoch + 1, verbose=0, callbacks=[progress])
  out = capsys.readouterr().out
  first, second = out.split("Epoch 2/2")
  assert "Epoch 1/2" in first and "8/Unknown" in first
  assert "8/8" in second and "Unknown" not in second


@pytest.mark.parametrize("cache", [None, "memory", "directory"])
def test_the_first_epoch_knows_its_total_from_the_shards(shards, tmp_path, monkeypatch, cache):
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn import training  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn.data import reader  # pylint: disable=import-outside-toplevel
  lines = []
  monkeypatch.setattr(absl_logging, "info", lambda text, *args: lines.append(text % args))
  config = reader.ReaderConfig(shards, num_classes=NUM_CLASSES, batch_size=16, training=True,
                               cache=str(tmp_path / "cache") if cache == "directory" else cache)
  training.train(training.TrainConfig(str(tmp_path / "run"), model="logistic", num_epochs=1,
                                      log_every=2), config)
  # 96 videos / 16 a batch = 6 steps, counted (or read from the cache) before the epoch.
  progress = [line for line in lines if line.startswith("epoch 1/1, step ")]
  assert progress[0].startswith("epoch 1/1, step 2/6, loss ") and "left in the epoch" in (
      progress[0]), progress
