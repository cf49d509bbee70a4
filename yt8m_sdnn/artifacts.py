"""Atomic artifact writes and safe reads: a crash never leaves a half-written file.

Every artifact of the project (JSON metadata, `.npz` arrays, CSV files, saved models)
goes through `atomic_write_path`, which writes a temporary file beside the target and
renames it over the target only once the write succeeded. Arrays are read back with
`allow_pickle=False`; nothing in the project is loaded with pickle.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from typing import Any, Iterator, Mapping

import numpy as np

try:
  import tensorflow as tf
  _gfile = tf.io.gfile
  _FILE_SYSTEM_ERRORS: tuple[type[BaseException], ...] = (tf.errors.OpError, OSError)
except ImportError:  # a Keras-on-JAX host without TensorFlow: local files only
  tf = None
  _FILE_SYSTEM_ERRORS = (OSError,)

  class _LocalGFile:
    """The few `tf.io.gfile` calls this module makes, on the local file system."""
    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)
    remove = staticmethod(os.remove)
    GFile = staticmethod(open)

    @staticmethod
    def makedirs(path):
      os.makedirs(path, exist_ok=True)

    @staticmethod
    def rename(source, target, overwrite=False):
      del overwrite  # os.replace always replaces
      os.replace(source, target)

    @staticmethod
    def stat(path):
      class _Stat:  # pylint: disable=too-few-public-methods
        length = os.path.getsize(path)
      return _Stat

  _gfile = _LocalGFile()


class ArtifactError(ValueError):
  """An artifact is missing, unreadable or does not fit the data it is used with."""


def is_local(path: str) -> bool:
  """Whether `path` is on the local file system (not `gs://` and the like)."""
  return "://" not in path


def ensure_writable_dir(directory: str) -> None:
  """Creates `directory` if needed and checks that files can be created in it.

  Raises:
    ArtifactError: naming the directory, when it cannot be created or written.
  """
  try:
    _gfile.makedirs(directory)
  except _FILE_SYSTEM_ERRORS as error:
    raise ArtifactError(f"{directory}: cannot create the directory ({error})") from None
  if is_local(directory) and not os.access(directory, os.W_OK | os.X_OK):
    raise ArtifactError(f"{directory}: the directory is not writable")


def check_output_file(path: str, flag: str = "") -> None:
  """Checks, before any long pass, that `path` can be written as a file.

  Raises:
    ArtifactError: naming `path` (and `flag`), when it is a directory or its directory
      cannot be created or written.
  """
  name = f"{flag}={path}" if flag else path
  if _gfile.isdir(path):
    raise ArtifactError(f"{name}: is a directory; name the file to write")
  try:
    ensure_writable_dir(os.path.dirname(path) or ".")
  except ArtifactError as error:
    raise ArtifactError(f"{name}: cannot be written ({error})") from None


@contextlib.contextmanager
def atomic_write_path(path: str, suffix: str = "") -> Iterator[str]:
  """Yields a temporary path; on success renames it onto `path`, on failure deletes it.

  `suffix` keeps the extension that some writers insist on (Keras wants `.keras`,
  numpy appends `.npz` when it is missing).

  Example:
    with atomic_write_path("/tmp/model.keras", suffix=".keras") as tmp:
      model.save(tmp)
  """
  directory = os.path.dirname(path) or "."
  ensure_writable_dir(directory)
  if is_local(path):
    handle, temporary = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix,
        dir=directory)
    os.close(handle)
    # mkstemp creates 0600 files; artifacts get the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
  else:
    temporary = f"{path}.tmp-{os.getpid()}{suffix}"
  try:
    yield temporary
    _gfile.rename(temporary, path, overwrite=True)
  except BaseException as error:
    written = _gfile.stat(temporary).length if _gfile.exists(temporary) else 0
    if _gfile.exists(temporary):
      _gfile.remove(temporary)
    if is_disk_full(error) and not isinstance(error, ArtifactError):
      free = shutil.disk_usage(directory).free if is_local(directory) else None
      raise ArtifactError(
          f"{path}: no space left on the device: {written / 2**20:.1f} MB had been written "
          f"when it ran out" + (f", {free / 2**20:.1f} MB are free in {directory}" if free
                                 is not None else "") + "; nothing was left half-written. "
          "Free some space (old checkpoints, --keep_checkpoints) and rerun.") from None
    raise


def is_disk_full(error: BaseException) -> bool:
  """ENOSPC, as Python, TensorFlow's file system or h5py report it, or this module's
  own one-line error for it (`atomic_write_path`)."""
  if isinstance(error, OSError) and error.errno == errno.ENOSPC:
    return True
  text = str(error)
  if isinstance(error, ArtifactError) and "no space left on the device" in text:
    return True
  return isinstance(error, _FILE_SYSTEM_ERRORS + (RuntimeError,)) and (
      "No space left on device" in text or "errno = 28" in text)


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_write_path(path) as temporary:
    with _gfile.GFile(temporary, "w") as stream:
      stream.write(text)


def json_value(value: Any) -> Any:
  """`value` as plain JSON: numpy scalars and arrays as Python, NaN and ±inf as null.

  JSON has no NaN or infinity (Python's `json` writes `NaN`, which other readers
  refuse); an undefined number (the AP of a class without positives, a correlation
  of constant values) is null in every file the package writes.
  """
  if isinstance(value, Mapping):
    return {key: json_value(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_value(item) for item in value]
  if isinstance(value, np.ndarray):
    return json_value(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path: str, payload: Mapping[str, Any]) -> None:
  """Writes `payload` as indented JSON to `path` atomically (`json_value`: NaN → null)."""
  write_text(path, json.dumps(json_value(payload), indent=2, sort_keys=False,
                              allow_nan=False) + "\n")


def read_json(path: str, regenerate_hint: str = "") -> dict[str, Any]:
  """Reads a JSON object, naming the file (and how to remake it) on any failure."""
  hint = f" {regenerate_hint}" if regenerate_hint else ""
  if not _gfile.exists(path):
    raise ArtifactError(f"{path}: file not found.{hint}")
  try:
    with _gfile.GFile(path, "r") as stream:
      payload = json.load(stream)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ArtifactError(f"{path}: not valid JSON ({error}).{hint}") from None
  if not isinstance(payload, dict):
    raise ArtifactError(f"{path}: expected a JSON object, found {type(payload).__name__}.{hint}")
  return payload


def write_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Writes named arrays to a compressed `.npz` atomically."""
  buffer = io.BytesIO()  # zip writing seeks back, which GFile streams do not allow
  np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
  with atomic_write_path(path, suffix=".npz") as temporary:
    with _gfile.GFile(temporary, "wb") as stream:
      stream.write(buffer.getvalue())


def read_npz(path: str, regenerate_hint: str = "") -> dict[str, np.ndarray]:
  """Reads every array of an `.npz` with `allow_pickle=False`."""
  hint = f" {regenerate_hint}" if regenerate_hint else ""
  if not _gfile.exists(path):
    raise ArtifactError(f"{path}: file not found.{hint}")
  try:
    with _gfile.GFile(path, "rb") as stream:
      data = stream.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
      return {name: archive[name] for name in archive.files}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
    raise ArtifactError(f"{path}: not a readable .npz archive ({error}).{hint}") from None
