"""A tiny train -> eval -> predict run through the binaries, and the pieces they use."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import random_videos, write_video_shards
from yt8m_sdnn import artifacts, evaluation, losses, models, prediction, training
from yt8m_sdnn.data import reader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_binary(name: str, *flags: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", f"bin.{name}", *flags], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_train_eval_predict_binaries(synthetic_dir, tmp_path):
  train_dir = tmp_path / "cnn"
  common = ["--num_classes=12", "--batch_size=64"]
  result = run_binary("yt8m_train", f"--train_data={synthetic_dir}/train", f"--train_dir={train_dir}",
                      "--model=cnn", "--num_epochs=2", "--seed=1", *common)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (train_dir / "model.keras").is_file() and (train_dir / "logs").is_dir()
  result = run_binary("yt8m_eval", f"--eval_data={synthetic_dir}/validate",
                      f"--train_dir={train_dir}", "--batch_size=64")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((train_dir / "eval_metrics.json").read_text())
  assert set(metrics) >= {"gap", "hit_at_one", "perr", "map", "num_videos"}
  assert metrics["num_videos"] == 96 and 0 <= metrics["gap"] <= 1
  assert list((train_dir / "logs" / "eval").glob("events.out.tfevents.*"))  # TensorBoard
  output = tmp_path / "submission.csv"
  vocabulary = tmp_path / "vocabulary.csv"  # 15 names for a 12-class model: warned
  vocabulary.write_text("Index,TrainVideoCount,Name\n" +
                        "".join(f"{i},1,class {i}\n" for i in range(15)))
  result = run_binary("yt8m_predict", f"--input_data={synthetic_dir}/validate",
                      f"--train_dir={train_dir}", f"--output_file={output}", "--top_k=5",
                      f"--vocabulary={vocabulary}", "--show_videos=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "names 15 classes, but the model was trained with --num_classes=12" in result.stderr
  assert result.stdout.count("(") >= 2 and "class " in result.stdout
  rows = list(csv.reader(output.open()))
  assert rows[0] == ["VideoId", "LabelConfidencePairs"] and len(rows) == 97
  pairs = rows[1][1].split()
  assert len(pairs) == 10 and all(0 <= int(label) < 12 for label in pairs[::2])
  scores = [float(score) for score in pairs[1::2]]
  assert scores == sorted(scores, reverse=True)


def test_train_binary_reports_bad_flag_value(tmp_path):
  result = run_binary("yt8m_train", f"--train_data={tmp_path}/none*", f"--train_dir={tmp_path}/x",
                      "--model=resnet")
  assert result.returncode != 0 and "--model" in result.stderr


def test_missing_training_data_is_named(tmp_path):
  result = run_binary("yt8m_train", f"--train_data={tmp_path}/none*", f"--train_dir={tmp_path}/x")
  assert result.returncode != 0 and f"{tmp_path}/none*" in result.stderr


def test_sigmoid_cross_entropy_sums_over_classes():
  loss = losses.SigmoidCrossEntropy()
  y_true = np.array([[1.0, 0.0]], np.float32)
  y_pred = np.array([[0.5, 0.5]], np.float32)
  # Eq. (3) for one video: -ln 0.5 - ln 0.5 = 2 ln 2 ≈ 1.386294
  np.testing.assert_allclose(float(loss(y_true, y_pred)), 2 * np.log(2), rtol=1e-5)


def test_paper_cnn_shapes():
  model = models.build_cnn(1152, 3862)
  assert models.output_layer(model).input.shape[-1] == 576 * 64  # 36,864 features
  assert model.output_shape == (None, 3862)
  with pytest.raises(ValueError, match="Expected one of"):
    models.build_model("resnet", 10, 2)


def test_evaluate_rejects_model_for_other_class_count(tmp_path):
  write_video_shards(tmp_path, *random_videos(8, 10))
  model = models.build_logistic(1152, 7)
  with pytest.raises(ValueError, match="scores 7 classes; the data has 10"):
    evaluation.evaluate(model, reader.ReaderConfig(str(tmp_path), num_classes=10))


def test_submission_lines_are_vectorized_top_k():
  import tensorflow as tf
  lines = prediction.format_lines(tf.constant(["a", "b"]),
                                  tf.constant([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]]), 2).numpy()
  assert lines.tolist() == [b"a,1 0.900000 2 0.500000", b"b,0 0.300000 1 0.200000"]


def test_unwritable_train_dir_is_named(tmp_path):
  blocked = tmp_path / "file"
  blocked.write_text("not a directory")
  with pytest.raises(artifacts.ArtifactError, match="file"):
    artifacts.ensure_writable_dir(str(blocked / "train_dir"))


def test_saved_model_reloads_in_safe_mode(tmp_path):
  model = models.build_cnn(16, 3)
  path = str(tmp_path / "model.keras")
  training.save_model(model, path)
  reloaded = keras.saving.load_model(path, safe_mode=True)
  x = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
  np.testing.assert_allclose(reloaded(x), model(x), rtol=1e-6)


def test_class_names_of_both_releases():
  from conftest import SHARED_DATA
  from yt8m_sdnn.data import vocabulary
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real YT8M files not found at {SHARED_DATA}")
  names_2018 = vocabulary.load_class_names(str(SHARED_DATA / "vocabulary.csv"))
  assert len(names_2018) == 3862 and names_2018[0] == "Game"
  names_2017 = vocabulary.load_class_names(str(SHARED_DATA.parent / "yt8m-2017" / "label_names.csv"))
  assert len(names_2017) == 4716


def test_vocabulary_with_unknown_header_is_named(tmp_path):
  from yt8m_sdnn.data import vocabulary
  path = tmp_path / "vocab.csv"
  path.write_text("a,b\n1,x\n")
  with pytest.raises(ValueError, match="vocab.csv: expected a header"):
    vocabulary.load_class_names(str(path))


def test_eval_binary_with_skip_corrupt_counts_and_skips(synthetic_dir, tmp_path):
  import shutil
  train_dir = tmp_path / "lr"
  # Any trained model will do; trained in this process, which has TensorFlow loaded.
  training.train(training.TrainConfig(train_dir=str(train_dir), model="logistic", num_epochs=1),
                 reader.ReaderConfig(f"{synthetic_dir}/train", num_classes=12, batch_size=64,
                                     training=True, seed=0))
  eval_dir = tmp_path / "eval"
  shutil.copytree(synthetic_dir / "validate", eval_dir)
  with open(eval_dir / "validate0000-of-0002.tfrecord", "ab") as stream:
    stream.write(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage")  # a torn record at the end
  result = run_binary("yt8m_eval", f"--eval_data={eval_dir}", f"--train_dir={train_dir}")
  assert result.returncode == 1 and "validate0000-of-0002.tfrecord" in result.stderr
  assert "Traceback" not in result.stderr
  result = run_binary("yt8m_eval", f"--eval_data={eval_dir}", f"--train_dir={train_dir}",
                      "--skip_corrupt")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "1 of 96 records unusable and skipped" in result.stderr
  assert json.loads((train_dir / "eval_metrics.json").read_text())["num_videos"] == 96


def test_stage_by_stage_binaries_train_the_subclass_model(synthetic_dir, tmp_path):
  common = ["--num_classes=12", "--batch_size=64"]
  neglection_dir, plan_path, scnn_dir = tmp_path / "neglection", tmp_path / "plan.npz", tmp_path / "scnn"
  result = run_binary("yt8m_neglection", f"--train_data={synthetic_dir}/train",
                      f"--train_dir={neglection_dir}", "--fraction_of_epoch=1", "--top_k_classes=3",
                      "--model=logistic", *common)
  assert result.returncode == 0, result.stderr[-3000:]
  selected = json.loads((neglection_dir / "neglection.json").read_text())["selected"]
  assert len(selected) == 3
  result = run_binary("yt8m_partition", f"--train_data={synthetic_dir}/train",
                      f"--neglection={neglection_dir}/neglection.json", f"--output={plan_path}",
                      *common)
  assert result.returncode == 0, result.stderr[-3000:]
  result = run_binary("yt8m_train", f"--train_data={synthetic_dir}/train", f"--train_dir={scnn_dir}",
                      f"--subclass_plan={plan_path}", "--num_epochs=1", *common)
  assert result.returncode == 0, result.stderr[-3000:]
  model = keras.saving.load_model(scnn_dir / "model.keras", safe_mode=True)
  assert model.output_shape == (None, 12)  # class scores, merged from 15 subclass units
  result = run_binary("yt8m_eval", f"--eval_data={synthetic_dir}/validate",
                      f"--train_dir={scnn_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  result = run_binary("yt8m_train", f"--train_data={synthetic_dir}/train",
                      f"--train_dir={tmp_path}/bad", f"--subclass_plan={plan_path}",
                      "--num_classes=20", "--batch_size=64")
  assert result.returncode == 1 and "plan is for 12 classes, the data has 20" in result.stderr


@pytest.mark.parametrize("kwargs,message", [
    ({"fraction_of_epoch": 0.0}, "fraction_of_epoch must be > 0"),
    ({"fraction_of_epoch": 0.1, "tau": 50}, "tau=50 is larger than the 1 iterations run"),
])
def test_neglection_stage_rejects_bad_arguments(synthetic_dir, tmp_path, kwargs, message):
  from yt8m_sdnn.experiments import measure
  config = reader.ReaderConfig(f"{synthetic_dir}/train", num_classes=12, batch_size=64)
  with pytest.raises(ValueError, match=message):
    measure.measure_neglection(training.TrainConfig(train_dir=str(tmp_path)), config, **kwargs)


def test_neglection_binary_names_unwritable_train_dir(synthetic_dir, tmp_path):
  blocked = tmp_path / "file"
  blocked.write_text("x")
  result = run_binary("yt8m_neglection", f"--train_data={synthetic_dir}/train",
                      f"--train_dir={blocked}/sub", "--num_classes=12")
  assert result.returncode == 1 and f"{blocked}/sub" in result.stderr


def test_evaluation_refuses_duplicated_video_ids(tmp_path):
  ids, labels, rgb, audio = random_videos(12, 5, seed=3)
  ids[7] = ids[2]  # the same video twice, in the second shard
  write_video_shards(tmp_path, ids, labels, rgb, audio, num_shards=2)
  config = reader.ReaderConfig(str(tmp_path), num_classes=5, batch_size=4)
  model = models.build_logistic(1152, 5)
  with pytest.raises(reader.DataError) as raised:
    evaluation.evaluate(model, config)
  message = str(raised.value)
  assert "1 video ids occur more than once" in message
  assert f"{tmp_path}/train00.tfrecord: record 2 (id 'v002')" in message
  assert f"{tmp_path}/train01.tfrecord: record 1 (id 'v002')" in message


def test_only_the_newest_checkpoints_are_kept(tmp_path):
  ids, labels, rgb, audio = random_videos(64, 5, seed=2)
  (tmp_path / "data").mkdir()
  write_video_shards(tmp_path / "data", ids, labels, rgb, audio)
  config = training.TrainConfig(train_dir=str(tmp_path / "run"), model="logistic", num_epochs=3,
                                keep_checkpoints=1)
  training.train(config, reader.ReaderConfig(str(tmp_path / "data"), num_classes=5,
                                             batch_size=32, training=True, seed=0))
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["epoch-003.weights.h5"]
