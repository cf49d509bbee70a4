"""A trained model on disk: `model.keras` and `model_config.json` of a train_dir.

`save_model` writes the `.keras` archive atomically, without the optimizer's state and
never with a NaN weight; `load_trained_model` reads it in Keras' safe mode (no
arbitrary code), with one-line errors naming the file; `model_config.json` says how
the data must be read for the model (`load_model_config` checks its keys and the type
and range of each value; `training` writes it).

The one set of checks of every binary that uses a trained model (yt8m-eval,
yt8m-predict, yt8m-export): `load_trained` reads both files and refuses a model whose
widths are not its config's (`check_model_fits`), before any shard is read.
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
from yt8m_sdnn.data import config as data_config

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
  problem = _value_problem(config)
  if problem:
    raise artifacts.ArtifactError(f"{path}: {problem}. {hint}")
  return config


_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array",
               dict: "object", type(None): "null"}


def _is_integer(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _value_problem(config: dict) -> str | None:
  """What is wrong with a value of `MODEL_CONFIG_KEYS`, naming the key; None if nothing."""

  def wrong(key, expected):
    value = config[key]
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    return f"{key!r} is {value!r} (a JSON {kind}); expected {expected}"

  if not _is_integer(config["num_classes"]) or not (
      0 < config["num_classes"] <= data_config.MAX_NUM_CLASSES):
    return wrong("num_classes", f"an integer in [1, {data_config.MAX_NUM_CLASSES:,}]")
  if not _is_integer(config["num_outputs"]) or config["num_outputs"] < config["num_classes"]:
    return wrong("num_outputs", f"an integer of at least num_classes ({config['num_classes']})")
  names, sizes = config["feature_names"], config["feature_sizes"]
  if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
    return wrong("feature_names", "a non-empty list of feature names")
  if not isinstance(sizes, list) or len(sizes) != len(names) or not all(
      _is_integer(size) and size > 0 for size in sizes):
    return wrong("feature_sizes", f"a list of {len(names)} positive integers (one a feature)")
  if not isinstance(config["frame_level"], bool):
    return wrong("frame_level", "true or false")
  if not isinstance(config["id_key"], str) or not config["id_key"]:
    return wrong("id_key", "a feature key such as \"id\" or \"video_id\"")
  return None


def check_model_fits(model: keras.Model, feature_size: int, num_classes: int,
                     model_name: str, expected_by: str, feature_hint: str = "",
                     class_hint: str = "") -> None:
  """Refuses a model that does not map `feature_size` features to `num_classes` scores.

  The one check of a model's widths, for evaluation, prediction and export alike: a
  wrong input width would fail inside a traced function, a wrong output width would
  score (and write) class ids the data does not have.

  Args:
    model: a built Keras model with one input and one output.
    feature_size, num_classes: the widths it must have.
    model_name: names the model, first in the message (`path:`, `model 'logistic'`).
    expected_by: what asks for those widths (`model_config.json`'s path, the data).
    feature_hint, class_hint: appended to the message on either width (a flag).

  Raises:
    artifacts.ArtifactError: naming the model, its width and the expected one.
  """
  input_width, output_width = model.inputs[0].shape[-1], model.outputs[0].shape[-1]
  if input_width != feature_size:
    raise artifacts.ArtifactError(f"{model_name} takes {input_width} features; {expected_by} "
                                  f"gives {feature_size}{feature_hint}")
  if output_width != num_classes:
    raise artifacts.ArtifactError(f"{model_name} scores {output_width} classes; {expected_by} "
                                  f"has {num_classes}{class_hint}")


def load_trained(train_dir: str) -> tuple[keras.Model, dict]:
  """(model, model config) of a finished train_dir, both checked, the model against its config.

  Raises:
    artifacts.ArtifactError: naming the file: either is missing or unreadable, a value
      of the config has the wrong type or range, or the model's input or output width
      is not the config's (then: retrain, or restore the pair).
  """
  config = load_model_config(train_dir)
  model = load_trained_model(train_dir)
  config_path = os.path.join(train_dir, MODEL_CONFIG_FILE)
  try:
    check_model_fits(model, sum(config["feature_sizes"]), config["num_classes"],
                     os.path.join(train_dir, MODEL_FILE) + ":", config_path)
  except artifacts.ArtifactError as error:
    raise artifacts.ArtifactError(
        f"{error}; the two files are not of one run: retrain with yt8m-train") from None
  return model, config


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
