"""The absl binaries. Importing this package quiets TensorFlow's start-up lines.

TensorFlow's C++ runtime writes about nine lines to stderr when it is imported (oneDNN,
CUDA stubs, an error-level `failed call to cuInit` on machines without a GPU), before
absl logging starts and whatever `TF_CPP_MIN_LOG_LEVEL` says. The binaries import
TensorFlow here with stderr pointed at /dev/null, so a run prints only its own lines.
Set `TF_CPP_MIN_LOG_LEVEL` yourself (e.g. `TF_CPP_MIN_LOG_LEVEL=0`) to see them again:
then nothing is hidden. Python errors raised by the import are not affected.
"""

import os


def _import_tensorflow_quietly() -> None:
  if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
    return  # the user chose a level: show what it lets through
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # warnings and errors only, after start-up
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    # The CUDA probe (and its cuInit error on CPU machines) happens on first use.
    tf.config.list_physical_devices("GPU")
  except ImportError:
    pass  # reported where the binary imports it, with stderr back
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


_import_tensorflow_quietly()
