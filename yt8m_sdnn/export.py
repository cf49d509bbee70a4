"""Exports a trained model as a TensorFlow SavedModel for serving.

`export_saved_model(train_dir, output)` reads `train_dir/model.keras` and
`model_config.json` (what `yt8m-train` writes) and writes a SavedModel directory with
one serving function, `serve`, registered under the signature keys "serve" and
"serving_default" (the one TF Serving calls):

    inputs:  "features"       float32 [batch, feature_size]
    outputs: "probabilities"  float32 [batch, num_classes]

`feature_size` is the sum of the model config's `feature_sizes`; the features are the
video's `feature_names` concatenated in that order (2018 release: mean_rgb 1024, then
mean_audio 128; a frame-level model takes its frames dequantized and mean-pooled, as
the reader pools them). The function L2-normalizes each modality exactly as the
reader does before the model sees it (`decoding.l2_normalize`), so raw features
work; already-normalized ones pass through unchanged up to float32 rounding. The
outputs are class probabilities: for a subclass network (`SubclassMerge` after the
sigmoid) the max over each class's subclasses, as `model.keras` returns them.

The SavedModel is standalone: the forward pass is traced into plain TensorFlow ops
(the mixture-of-experts layer and `SubclassMerge` included), so loading it needs
TensorFlow only: neither this package nor any Keras layer or model code is imported:

    serving = tf.saved_model.load(output)
    probabilities = serving.signatures["serving_default"](
        features=tf.constant(features, tf.float32))["probabilities"]

`serving.serve(features)` returns the same dict.

The export is written into a temporary sibling directory and renamed onto `output`
at the end, so a crash never leaves a half-written SavedModel there; a full disk
ends in one `ArtifactError` naming `output`, the temporary directory deleted. The
model is checked as evaluation and prediction check it (`model_files.load_trained`).
TensorFlow's INFO lines about the write (renamed captured inputs, sharding times,
the temporary directory's assets) are held back while it writes; its warnings pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from typing import Iterator

import keras
import tensorflow as tf
from absl import logging as absl_logging

from yt8m_sdnn import artifacts, model_files
from yt8m_sdnn.data import decoding

SIGNATURE_NAME = "serving_default"
ENDPOINT_NAME = "serve"
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
_SAVED_MODEL_FILE = "saved_model.pb"


def _normalize_modalities(features: tf.Tensor, feature_sizes) -> tf.Tensor:
  """Each modality divided by max(its L2 norm, 1e-6): the reader's normalization."""
  parts = tf.split(features, list(feature_sizes), axis=1) if len(feature_sizes) > 1 else [
      features]
  normalized = [decoding.l2_normalize(part)[0] for part in parts]  # the reader's own
  return normalized[0] if len(normalized) == 1 else tf.concat(normalized, axis=1)


def _check_output(output: str, overwrite: bool) -> None:
  """Refuses an existing `output`, or with `overwrite` one that is not a SavedModel.

  Raises:
    artifacts.ArtifactError: naming `output`.
  """
  if not tf.io.gfile.exists(output):
    return
  if not overwrite:
    raise artifacts.ArtifactError(
        f"{output}: already exists; pass --overwrite to replace it, or choose another "
        "--output")
  replaceable = tf.io.gfile.isdir(output) and (
      not tf.io.gfile.listdir(output)
      or tf.io.gfile.exists(os.path.join(output, _SAVED_MODEL_FILE)))
  if not replaceable:  # never delete what is not an export (a typo'd --output=$HOME)
    raise artifacts.ArtifactError(
        f"{output}: exists and is not a SavedModel directory (no {_SAVED_MODEL_FILE}); "
        "not replaced even with --overwrite. Choose another --output")


def _temporary_sibling(output: str) -> str:
  parent = os.path.dirname(output.rstrip("/")) or "."
  artifacts.ensure_writable_dir(parent)
  name = "." + os.path.basename(output.rstrip("/"))
  if artifacts.is_local(output):
    temporary = tempfile.mkdtemp(prefix=name + ".", suffix=".tmp", dir=parent)
    # mkdtemp creates 0700 directories; the export gets what a plain mkdir would give.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o777 & ~umask)
    return temporary
  return os.path.join(parent, f"{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _move_into_place(temporary: str, output: str) -> None:
  """Renames `temporary` onto `output`; an old `output` is moved aside, then deleted."""
  old = None
  if tf.io.gfile.exists(output):
    old = f"{temporary}.old"
    tf.io.gfile.rename(output, old)
  try:
    tf.io.gfile.rename(temporary, output)
  except BaseException:
    if old is not None:
      tf.io.gfile.rename(old, output)  # put the previous export back
    raise
  if old is not None:
    tf.io.gfile.rmtree(old)


@contextlib.contextmanager
def _without_tensorflow_info() -> Iterator[None]:
  """Holds back INFO lines while TensorFlow writes (its warnings and errors pass).

  TF's saving code logs through both its own `tensorflow` logger and absl's; nothing
  of this package logs while the context is open.
  """
  logger = logging.getLogger("tensorflow")
  level, verbosity = logger.level, absl_logging.get_verbosity()
  logger.setLevel(max(level, logging.WARNING))
  absl_logging.set_verbosity(min(verbosity, absl_logging.WARNING))
  try:
    yield
  finally:
    logger.setLevel(level)
    absl_logging.set_verbosity(verbosity)


def _size_of(directory: str) -> int:
  """Bytes of every file under `directory`."""
  return sum(tf.io.gfile.stat(os.path.join(root, name)).length
             for root, _, names in tf.io.gfile.walk(directory) for name in names)


def export_saved_model(train_dir: str, output: str, overwrite: bool = False) -> str:
  """Writes the model of `train_dir` as a SavedModel directory `output`; returns `output`.

  Args:
    train_dir: a finished training directory (`model.keras`, `model_config.json`).
    output: the SavedModel directory to create.
    overwrite: replace an existing SavedModel (or empty directory) at `output`.

  Raises:
    artifacts.ArtifactError: no model or model config in `train_dir`, a model that
      does not fit its config, an existing `output` (see `overwrite`), or a full disk;
      each names the path.
    ValueError: Keras runs on a backend other than TensorFlow.
  """
  if keras.backend.backend() != "tensorflow":
    raise ValueError(f"exporting a SavedModel needs Keras' TensorFlow backend; "
                     f"KERAS_BACKEND is {keras.backend.backend()!r}")
  model_files.load_model_config(train_dir)  # a missing run is named before --output
  _check_output(output, overwrite)
  model, model_config = model_files.load_trained(train_dir)
  feature_sizes = list(model_config["feature_sizes"])
  feature_size = sum(feature_sizes)

  def serve(features):
    probabilities = model(_normalize_modalities(features, feature_sizes), training=False)
    return {OUTPUT_NAME: tf.cast(probabilities, tf.float32)}

  temporary = _temporary_sibling(output)
  try:
    with _without_tensorflow_info():
      archive = keras.export.ExportArchive()
      archive.track(model)
      archive.add_endpoint(ENDPOINT_NAME, serve, input_signature=[
          tf.TensorSpec([None, feature_size], tf.float32, name=INPUT_NAME)])
      archive.write_out(temporary, verbose=False)  # also aliased as "serving_default"
    _move_into_place(temporary, output)
  except BaseException as error:
    written = _size_of(temporary) if tf.io.gfile.exists(temporary) else 0
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.rmtree(temporary)
    if artifacts.is_disk_full(error):
      raise artifacts.ArtifactError(
          f"{output}: no space left on the device for the SavedModel ({written / 2**20:.1f} "
          "MB of it had been written, all deleted: nothing is left half-written). Free "
          "some space, or choose another --output") from None
    raise
  return output
