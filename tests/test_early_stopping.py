"""Early stopping on validation shards: the best epoch's weights are the ones kept."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, binary_env, kill_when_backed_up
from yt8m_sdnn import early_stopping, evaluation, training
from yt8m_sdnn.data import reader


def _tiny_model() -> keras.Model:
  inputs = keras.Input(shape=(2,))
  model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="dense")(inputs))
  return model


def _run_curve(callback, model, curve):
  """Plays a hand-made validation curve: at epoch e the kernel is [[e], [e]]."""
  ended = []
  for epoch, _ in enumerate(curve):
    model.get_layer("dense").kernel.assign(np.full((2, 1), float(epoch), np.float32))
    callback.on_epoch_end(epoch, {})
    ended.append(epoch)
    if callback.stopped:
      break
  return ended


def test_keeps_the_best_epoch_and_stops_after_patience(tmp_path):
  # Scores 0.1, 0.5, 0.4, 0.45, 0.3, 0.9: the best within reach is epoch 1 (0.5); the
  # three epochs after it are worse, so with patience 3 training ends after epoch 4 and
  # never sees the 0.9 of epoch 5.
  curve = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9]
  scores = iter(curve)
  model = _tiny_model()
  callback = early_stopping.ValidationEarlyStopping(lambda: next(scores), str(tmp_path),
                                                    patience=3)
  callback.set_model(model)
  assert _run_curve(callback, model, curve) == [0, 1, 2, 3, 4]
  assert callback.best_epoch == 1 and callback.best_score == 0.5 and callback.wait == 3
  assert model.stop_training
  callback.restore_best_weights(model)
  np.testing.assert_array_equal(model.get_layer("dense").kernel.numpy(), np.full((2, 1), 1.0))
  assert [point["val_gap"] for point in callback.curve] == curve[:5]


def test_state_round_trip_resumes_mid_patience(tmp_path):
  curve = [0.2, 0.6, 0.5, 0.55, 0.4]
  scores = iter(curve)
  model = _tiny_model()
  first = early_stopping.ValidationEarlyStopping(lambda: next(scores), str(tmp_path), patience=3)
  first.set_model(model)
  _run_curve(first, model, curve[:3])  # epochs 0-2: best 1, one epoch without improvement
  state = json.loads(json.dumps(first.backup_state()))  # as the backup stores it
  second = early_stopping.ValidationEarlyStopping(lambda: next(scores), str(tmp_path),
                                                  patience=3)
  second.set_model(model)
  second.restore_backup_state(state)
  assert second.best_epoch == 1 and second.wait == 1 and not second.stopped
  for epoch in (3, 4):
    model.get_layer("dense").kernel.assign(np.full((2, 1), float(epoch), np.float32))
    second.on_epoch_end(epoch, {})
  assert second.stopped and second.best_epoch == 1
  second.restore_best_weights(model)
  np.testing.assert_array_equal(model.get_layer("dense").kernel.numpy(), np.full((2, 1), 1.0))


def test_restore_names_missing_best_weights(tmp_path):
  callback = early_stopping.ValidationEarlyStopping(lambda: 0.0, str(tmp_path))
  state = {"best_epoch": 2, "best_score": 0.5, "best_weights": "best-epoch0002.weights.h5",
           "wait": 0, "curve": [], "stopped": False}
  with pytest.raises(Exception, match="best-epoch0002.weights.h5"):
    callback.restore_backup_state(state)


def test_train_saves_the_best_validation_epoch(synthetic_dir, tmp_path):
  train_reader = reader.ReaderConfig(f"{synthetic_dir}/train", num_classes=12, batch_size=64,
                                     training=True, seed=0)
  val_reader = reader.ReaderConfig(f"{synthetic_dir}/validate", num_classes=12, batch_size=64)
  config = training.TrainConfig(train_dir=str(tmp_path / "lr"), model="logistic",
                                num_epochs=12, learning_rate=0.05, patience=2, seed=0)
  result = training.train(config, train_reader, val_reader=val_reader)
  curve = result.validation_curve
  best = max(curve, key=lambda point: point["val_gap"])
  assert result.best_epoch == best["epoch"] and result.best_steps == best["steps"]
  assert len(curve) == 12 or result.stopped_early
  # The saved model is the best epoch's: it scores exactly the best validation GAP.
  saved = training.load_trained_model(config.train_dir)
  gap = evaluation.evaluate(saved, val_reader)["gap"]
  assert gap == pytest.approx(best["val_gap"], abs=1e-6)
  record = json.loads((tmp_path / "lr" / training.VALIDATION_FILE).read_text())
  assert record["best_epoch"] == result.best_epoch and len(record["validation_curve"]) == len(curve)
  assert not (tmp_path / "lr" / "backup").exists()
  assert "val_gap" in result.history


def _command(data_dir, train_dir):
  return [sys.executable, "-m", "bin.yt8m_train", f"--train_data={data_dir}/train",
          f"--val_data={data_dir}/validate", f"--train_dir={train_dir}", "--model=logistic",
          "--num_classes=12", "--batch_size=32", "--num_epochs=8", "--patience=1",
          "--backup_steps=3", "--seed=3", "--deterministic", "--learning_rate=0.3"]


def test_killed_early_stopped_training_resumes_with_the_same_curve(synthetic_dir, tmp_path):
  reference = tmp_path / "reference"
  subprocess.run(_command(synthetic_dir, reference), cwd=ROOT, env=binary_env(), check=True,
                 capture_output=True, timeout=300)
  expected = json.loads((reference / training.VALIDATION_FILE).read_text())
  # The run records the recipe it took and what its flags changed.
  recipe = json.loads((reference / training.TRAIN_RESULT_FILE).read_text())["recipe"]
  assert recipe.startswith("recipe early-stopped logistic: "), recipe
  assert "learning_rate 0.3 (given; paper 0.001)" in recipe
  assert "num_epochs 8 (given; paper 5)" in recipe and "weight_decay 0 (recipe" in recipe
  resumed = tmp_path / "resumed"

  def two_scored_epochs_mid_epoch(state):
    stopping = state.get("callbacks", {}).get("ValidationEarlyStopping", {})
    return len(stopping.get("curve", [])) >= 2 and state["step"] >= 3

  # Kill mid-epoch, once the backup holds two scored epochs (8 steps an epoch). With
  # patience 1 the runs stop early, after the first epoch that scores worse than the
  # best (epoch 4 of 8 here), so the curve's length also depends on the restored state.
  kill_when_backed_up(_command(synthetic_dir, resumed), resumed / "backup" / "backup_state.json",
                      two_scored_epochs_mid_epoch, "two scored epochs")
  result = subprocess.run(_command(synthetic_dir, resumed), cwd=ROOT, env=binary_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  # Resumed, not retrained from scratch (which, deterministic, would give the same curve).
  assert f"resuming from {resumed}/backup" in result.stderr
  got = json.loads((resumed / training.VALIDATION_FILE).read_text())
  assert got["best_epoch"] == expected["best_epoch"]
  assert got["stopped_early"] == expected["stopped_early"]
  assert [p["steps"] for p in got["validation_curve"]] == [
      p["steps"] for p in expected["validation_curve"]]
  np.testing.assert_allclose([p["val_gap"] for p in got["validation_curve"]],
                             [p["val_gap"] for p in expected["validation_curve"]], atol=1e-6)


RECIPE_CASES = [
    # Without validation shards: the paper's schedule.
    (["--model=logistic"], {"learning_rate": 0.001, "learning_rate_decay": 0.95,
                            "weight_decay": 5e-4, "optimizer": "adam"}),
    # With them: the family's early-stopped recipe; an explicit flag still wins.
    (["--model=logistic", "--val_data=v"], training.default_settings("logistic", True)),
    (["--model=logistic", "--val_data=v", "--learning_rate=0.5"],
     dict(training.default_settings("logistic", True), learning_rate=0.5)),
]

# One process parses every case's command line in turn (TensorFlow's import is most of
# a run): the flags are reset to their defaults before each parse, as in a fresh process.
# The cases run last to first, so a flag left over from a case with more flags would
# show in the next one.
_PRINT_RECIPES = """
import json, sys
from absl import flags
import yt8m_sdnn.cli.yt8m_train
from yt8m_sdnn.cli import flag_sets
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  flags.FLAGS([sys.argv[0], *argv])
  print(json.dumps(flag_sets.optimizer_settings()))
"""


@pytest.fixture(scope="module")
def recipes():
  """The optimizer settings yt8m-train derives from each case's flags, in order."""
  argvs = [["--train_data=t", "--train_dir=d", *flags] for flags, _ in reversed(RECIPE_CASES)]
  result = subprocess.run([sys.executable, "-c", _PRINT_RECIPES, json.dumps(argvs)], cwd=ROOT,
                          env=binary_env(TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()[-len(RECIPE_CASES):]
  return [json.loads(line) for line in reversed(lines)]


@pytest.mark.parametrize("case", range(len(RECIPE_CASES)),
                         ids=[" ".join(flags) for flags, _ in RECIPE_CASES])
def test_training_flags_default_to_the_recipe_of_the_protocol(recipes, case):
  assert recipes[case] == RECIPE_CASES[case][1], RECIPE_CASES[case][0]


def test_mistyped_or_overlapping_validation_shards_are_refused_before_training(synthetic_dir,
                                                                              tmp_path):
  env = binary_env(TF_CPP_MIN_LOG_LEVEL="3")
  common = [sys.executable, "-m", "bin.yt8m_train", f"--train_data={synthetic_dir}/train",
            f"--train_dir={tmp_path}/x", "--num_classes=12", "--model=logistic"]
  result = subprocess.run(common + [f"--val_data={tmp_path}/nothing*"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 1 and "--val_data" in result.stderr and "nothing*" in result.stderr
  result = subprocess.run(common + [f"--val_data={synthetic_dir}/validate",
                                    f"--eval_data={synthetic_dir}/validate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 1 and "share 2 files" in result.stderr
  assert not (tmp_path / "x" / "model.keras").exists()


def test_weight_decay_is_one_pull_whatever_the_optimizer():
  # λ = 0.01: coupled, L2(λ/2)·Σw² has the gradient λ·w; decoupled, no L2 term at all.
  coupled = training.TrainConfig(train_dir="", weight_decay=0.01)
  decoupled = training.TrainConfig(train_dir="", weight_decay=0.01, optimizer="adamw")
  assert coupled.l2_coefficient == 0.005 and decoupled.l2_coefficient == 0.0
  optimizer = training.make_optimizer("adamw", 0.1, weight_decay=0.01)
  kernel = keras.Variable(np.ones((2, 2), np.float32), name="kernel")
  bias = keras.Variable(np.ones((2,), np.float32), name="bias")
  optimizer.build([kernel, bias])
  optimizer.apply_gradients([(np.zeros((2, 2), np.float32), kernel),
                             (np.zeros((2,), np.float32), bias)])
  # Zero gradient: only the decay moves the kernel, by lr·λ·w = 0.1·0.01·1; bias untouched.
  np.testing.assert_allclose(kernel.numpy(), np.full((2, 2), 1 - 0.001), rtol=1e-6)
  np.testing.assert_array_equal(bias.numpy(), np.ones(2))


def test_scoring_every_epoch_reuses_one_compiled_forward_pass():
  # Validation calls `evaluate` after each epoch; a fresh tf.function per call would
  # trace the model again every epoch. The cached pass follows the weights and does not
  # keep the model alive.
  import gc  # pylint: disable=import-outside-toplevel
  import weakref  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model = _tiny_model()
  features = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((features, np.zeros((2, 1), np.float32))).batch(2)
  for epoch in range(3):
    model.get_layer("dense").kernel.assign(np.full((2, 1), float(epoch), np.float32))
    (scores, _), = list(evaluation.score_batches(model, dataset))
    np.testing.assert_allclose(scores[:, 0], epoch * features.sum(1))
  forward = evaluation._FORWARD[model]  # pylint: disable=protected-access
  assert forward.experimental_get_tracing_count() == 1
  del forward
  alive = weakref.ref(model)
  del model
  gc.collect()
  assert alive() is None
