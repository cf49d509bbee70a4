"""The package's binaries start TensorFlow quietly; library users get TensorFlow as it is.

TensorFlow's C++ runtime writes about nine lines to stderr when it is imported (oneDNN,
CUDA stubs, an error-level `failed call to cuInit` on machines without a GPU), before
absl logging starts and whatever `TF_CPP_MIN_LOG_LEVEL` says. When the running program
is one of `yt8m_sdnn.cli`'s binaries (a console script, `python bin/X.py` or
`python -m bin.X`), the package imports TensorFlow with stderr pointed at /dev/null, so
a run prints only its own lines. Set `TF_CPP_MIN_LOG_LEVEL` yourself (e.g.
`TF_CPP_MIN_LOG_LEVEL=0`) to see them again: then nothing is hidden. Python errors
raised by the import are not affected.
"""

import os
import sys

_CONSOLE_ONLY_NAMES = {"yt8m_sdnn"}  # yt8m-sdnn runs cli/yt8m_pipeline.py


def running_a_binary() -> bool:
  """Whether the program is one of the package's binaries (by its file or script name)."""
  name = os.path.splitext(os.path.basename(sys.argv[0] if sys.argv else ""))[0]
  name = name.replace("-", "_")
  cli = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli")
  return name in _CONSOLE_ONLY_NAMES or (
      name.startswith(("yt8m_", "image_")) and os.path.exists(os.path.join(cli, name + ".py")))


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow with its C++ start-up lines hidden, unless the user set a level."""
  if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
    return  # the user chose a level: show what it lets through
  if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    return
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
