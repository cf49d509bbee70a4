"""A trained model on disk: `model.keras` and `model_config.json` of a train_dir.

`save_model` writes the `.keras` archive atomically, without the optimizer's state and
never with a NaN weight; `load_trained_model` reads it in Keras' safe mode (no
arbitrary code), with one-line errors naming the file; `model_config.json` says how
the data must be read for the model (`load_model_config` checks its keys; `training`
writes it).
"""

from __future__ import annotations

import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

# The package's Keras objects (models, layers, losses) are registered when their
# modules are imported; a saved model names them, so loading needs them imported.
from yt8m_sdnn import artifacts, losses, models  # pylint: disable=unused-import

MODEL_FILE = "model.keras"
MODEL_CONFIG_FILE = "model_config.json"

# The keys `training.model_config_dict` writes and readers of a trained model rely on.
MODEL_CONFIG_KEYS = ("num_classes", "num_outputs", "feature_names", "feature_sizes",
                     "frame_level", "id_key")


def load_model_config(train_dir: str) -> dict:
  """Reads `model_config.json` of a train_dir, or says how to make one.

  Raises:
    artifacts.ArtifactError: naming the file, when it is missing, not JSON, or lacks a
      key of `MODEL_CONFIG_KEYS`.
  """
  path = os.path.join(train_dir, MODEL_CONFIG_FILE)
  hint = f"Train a model into {train_dir} first (yt8m-train --train_dir=...)."
  config = artifacts.read_json(path, regenerate_hint=hint)
  missing = [key for key in MODEL_CONFIG_KEYS if key not in config]
  if missing:
    raise artifacts.ArtifactError(f"{path}: lacks {missing}; it was not written by this "
                                  f"project's yt8m-train. {hint}")
  return config


def load_trained_model(train_dir: str) -> keras.Model:
  """Loads `train_dir/model.keras` with Keras' safe mode on (no arbitrary code)."""
  path = os.path.join(train_dir, MODEL_FILE)
  if not tf.io.gfile.exists(path):
    raise artifacts.ArtifactError(
        f"{path}: file not found. Train a model into {train_dir} first (yt8m-train).")
  if artifacts.is_local(path) and not zipfile.is_zipfile(path):
    raise artifacts.ArtifactError(
        f"{path}: not a Keras .keras archive (not a zip file). Retrain it with yt8m-train.")
  try:
    return keras.saving.load_model(path, safe_mode=True, compile=False)
  except Exception as error:  # pylint: disable=broad-except  # any failure: one line
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise artifacts.ArtifactError(
        f"{path}: cannot load the model ({type(error).__name__}: {message[:300]}). Safe "
        "mode refuses archives that name code outside Keras and this project; retrain it "
        "with yt8m-train.") from None


def check_finite_weights(model: keras.Model, path: str) -> None:
  """Refuses a model with a NaN or infinite weight, naming the weight and `path`."""
  for weight in model.weights:
    if not np.isfinite(np.asarray(weight)).all():
      raise artifacts.ArtifactError(
          f"{path}: not saved: the weight {weight.path} holds NaN or infinite values")


def save_model(model: keras.Model, path: str) -> None:
  """Saves a `.keras` file atomically; a model with non-finite weights is refused.

  The file holds the architecture, the weights and the compile config, not the
  optimizer's state: Keras writes every variable it reaches through the model's
  attributes, `model.optimizer` included (Adam's two moments per weight: the paper's
  CNN's file would be 1.7 GB instead of 0.57 GB; resuming uses the backup and the
  checkpoints, which keep that state). The optimizer is detached
  while the file is written and put back after. Loading with `compile=False`
  (`load_trained_model`) reads it as is; `keras.saving.load_model(path)` with compile
  builds a fresh optimizer and warns that it has no saved variables to load.
  """
  check_finite_weights(model, path)
  optimizer = getattr(model, "optimizer", None)
  with artifacts.atomic_write_path(path, suffix=".keras") as temporary:
    if optimizer is not None:
      model.optimizer = None
    try:
      model.save(temporary)
    finally:
      if optimizer is not None:
        model.optimizer = optimizer
