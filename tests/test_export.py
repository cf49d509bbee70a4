"""SavedModel export (`yt8m_sdnn.export`, yt8m-export) and the optimizer-free model.keras."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from conftest import ROOT, binary_env, random_videos, write_video_shards
from yt8m_sdnn import artifacts, export, models, training
from yt8m_sdnn.data import reader

NUM_CLASSES = 5
FEATURE_SIZES = (1024, 128)
FEATURE_SIZE = sum(FEATURE_SIZES)

# Loads SavedModels in a process where `import yt8m_sdnn` fails, and so does any Keras
# import TensorFlow's own import has not made, calls each one's serving signature on
# the given features and saves what it returns.
_LOAD_WITHOUT_PACKAGE = """
import importlib.abc, json, sys
import numpy as np
import tensorflow as tf
class _Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("yt8m_sdnn", "keras"):
      raise ImportError(f"{name} must not be needed to load the SavedModel")
    return None
sys.meta_path.insert(0, _Refuse())
jobs = json.loads(sys.argv[1])
for saved_model, features, output in jobs:
  serving = tf.saved_model.load(saved_model)
  signature = serving.signatures["serving_default"]
  result = signature(features=tf.constant(np.load(features)))
  np.save(output, result["probabilities"].numpy())
  print(json.dumps({"inputs": str(signature.structured_input_signature),
                    "outputs": sorted(result)}))
print("yt8m_sdnn" in sys.modules)
"""


def _normalized(features: np.ndarray) -> np.ndarray:
  """The reader's per-modality L2 normalization, in numpy."""
  parts = np.split(features, np.cumsum(FEATURE_SIZES)[:-1], axis=1)
  return np.concatenate(
      [part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-6) for part in parts],
      axis=1).astype(np.float32)


def _features(num_videos: int = 7, seed: int = 3) -> np.ndarray:
  """Raw (unnormalized) features, one all-zero row (the reader keeps it zero)."""
  values = np.random.default_rng(seed).normal(size=(num_videos, FEATURE_SIZE)) * 3
  values[0] = 0.0
  return values.astype(np.float32)


def _reader(shards) -> reader.ReaderConfig:
  return reader.ReaderConfig(str(shards), num_classes=NUM_CLASSES, batch_size=16,
                             training=True, seed=1, deterministic=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  directory = tmp_path_factory.mktemp("export_data")
  write_video_shards(directory, *random_videos(48, NUM_CLASSES, seed=5))
  return directory


@pytest.fixture(scope="module")
def logistic_dir(shards, tmp_path_factory):
  """A finished yt8m-train directory of a logistic model (Adam, one epoch)."""
  train_dir = tmp_path_factory.mktemp("logistic")
  result = training.train(
      training.TrainConfig(train_dir=str(train_dir), model="logistic", num_epochs=1,
                           learning_rate=0.01, seed=1),
      _reader(shards))
  return train_dir, result


@pytest.fixture(scope="module")
def subclass_moe_dir(shards, tmp_path_factory):
  """A train dir holding a subclass network on the mixture of experts (SubclassMerge)."""
  train_dir = tmp_path_factory.mktemp("subclass_moe")
  unit_to_class = [0, 0, 1, 2, 2, 2, 3, 4]
  keras.utils.set_random_seed(2)
  _, class_model = models.build_subclass_model("moe", FEATURE_SIZE, unit_to_class, NUM_CLASSES,
                                               num_mixtures=2)
  training.save_model(class_model, str(train_dir / training.MODEL_FILE))
  artifacts.write_json(str(train_dir / training.MODEL_CONFIG_FILE), training.model_config_dict(
      _reader(shards), training.TrainConfig(train_dir=str(train_dir), model="moe"),
      len(unit_to_class)))
  return train_dir


def test_saved_models_serve_the_keras_predictions_without_the_package(
    logistic_dir, subclass_moe_dir, tmp_path):
  features = _features()
  jobs, expected = [], []
  for name, train_dir in (("logistic", logistic_dir[0]), ("subclass_moe", subclass_moe_dir)):
    output = export.export_saved_model(str(train_dir), str(tmp_path / name))
    assert output == str(tmp_path / name)
    assert (tmp_path / name / "saved_model.pb").is_file()
    assert [entry for entry in os.listdir(tmp_path) if entry.startswith(".")] == []
    model = training.load_trained_model(str(train_dir))
    expected.append(np.asarray(model(_normalized(features), training=False)))
    np.save(tmp_path / "raw.npy", features)
    np.save(tmp_path / "normalized.npy", _normalized(features))
    for kind in ("raw", "normalized"):
      jobs.append([str(tmp_path / name), str(tmp_path / f"{kind}.npy"),
                   str(tmp_path / f"{name}_{kind}_out.npy")])
  assert any("SubclassMerge" in type(layer).__name__ for layer in
             training.load_trained_model(str(subclass_moe_dir)).layers)
  env = {key: value for key, value in binary_env().items() if key != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_PACKAGE, json.dumps(jobs)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert lines[-1] == "False"  # the package was never imported
  signature = json.loads(lines[0])
  assert "features" in signature["inputs"] and "1152" in signature["inputs"]
  assert signature["outputs"] == ["probabilities"]
  for index, want in enumerate(expected):
    assert want.shape == (len(features), NUM_CLASSES)
    for kind in ("raw", "normalized"):  # normalized inside; normalized input unchanged
      served = np.load(jobs[2 * index + ["raw", "normalized"].index(kind)][2])
      assert served.dtype == np.float32 and served.shape == want.shape
      np.testing.assert_allclose(served, want, atol=1e-5)


def test_export_binary_refuses_an_existing_output(logistic_dir, tmp_path):
  output = tmp_path / "served"
  command = [sys.executable, "-m", "bin.yt8m_export", f"--train_dir={logistic_dir[0]}",
             f"--output={output}"]
  first = subprocess.run(command, cwd=ROOT, env=binary_env(), capture_output=True, text=True,
                         timeout=300, check=False)
  assert first.returncode == 0, first.stderr[-3000:]
  assert (output / "saved_model.pb").is_file()
  assert "'features' float32 [batch, 1152] -> 'probabilities' float32 [batch, 5]" in first.stdout
  # Only its own line: none of TF's INFO lines about the write, no temporary path.
  for noise in ("unsupported characters", "Sharding callback", "Assets written",
                "fingerprint", ".tmp"):
    assert noise not in first.stdout + first.stderr, (noise, first.stderr[-3000:])
  second = subprocess.run(command, cwd=ROOT, env=binary_env(), capture_output=True,
                          text=True, timeout=300, check=False)
  assert second.returncode == 1
  assert str(output) in second.stderr and "--overwrite" in second.stderr
  assert "Traceback" not in second.stderr


def test_export_overwrites_only_a_saved_model_and_names_missing_models(logistic_dir,
                                                                        tmp_path):
  train_dir = str(logistic_dir[0])
  output = tmp_path / "served"
  export.export_saved_model(train_dir, str(output))
  (output / "stale").write_text("from the previous export")
  export.export_saved_model(train_dir, str(output), overwrite=True)
  assert (output / "saved_model.pb").is_file() and not (output / "stale").exists()
  assert sorted(os.listdir(tmp_path)) == ["served"]  # no temporary or old copy left

  precious = tmp_path / "precious"
  precious.mkdir()
  (precious / "notes.txt").write_text("not an export")
  with pytest.raises(artifacts.ArtifactError, match=f"{precious}: exists and is not a "):
    export.export_saved_model(train_dir, str(precious), overwrite=True)
  assert (precious / "notes.txt").is_file()

  empty = tmp_path / "empty_train_dir"
  empty.mkdir()
  with pytest.raises(artifacts.ArtifactError, match=str(empty / training.MODEL_CONFIG_FILE)):
    export.export_saved_model(str(empty), str(tmp_path / "out"))
  (empty / training.MODEL_CONFIG_FILE).write_text(
      (logistic_dir[0] / training.MODEL_CONFIG_FILE).read_text())
  with pytest.raises(artifacts.ArtifactError, match=str(empty / training.MODEL_FILE)):
    export.export_saved_model(str(empty), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


def _h5_entries(keras_file) -> list[str]:
  import h5py  # pylint: disable=import-outside-toplevel  # Keras needs it to save
  with zipfile.ZipFile(keras_file) as archive:
    with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
      names: list[str] = []
      weights.visit(names.append)
  return names


def test_model_keras_has_no_optimizer_state_and_predicts_the_same(logistic_dir, tmp_path):
  train_dir, result = logistic_dir
  model = result.model
  assert model.optimizer is not None and model.optimizer.iterations.numpy() > 0
  ours = train_dir / training.MODEL_FILE
  full = tmp_path / "with_optimizer.keras"
  model.save(full)  # Keras' default: optimizer variables included
  assert any(name.startswith("optimizer") for name in _h5_entries(full))
  assert not any("optimizer" in name for name in _h5_entries(ours))
  # Adam keeps two moments per weight: the weights alone are well under 2/3 of it.
  assert os.path.getsize(ours) < 0.6 * os.path.getsize(full)

  # save_model put the optimizer back: the in-memory model still trains on.
  copy = tmp_path / "again.keras"
  training.save_model(model, str(copy))
  assert model.optimizer is not None and model.optimizer.variables
  assert not any("optimizer" in name for name in _h5_entries(copy))

  features = _normalized(_features())
  loaded = training.load_trained_model(str(train_dir))
  np.testing.assert_array_equal(np.asarray(loaded(features)), np.asarray(model(features)))
  with zipfile.ZipFile(ours) as archive:  # the compile config is kept
    assert json.loads(archive.read("config.json")).get("compile_config")
