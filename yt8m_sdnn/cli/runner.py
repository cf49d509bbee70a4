"""The process runner of every binary: --help, user errors as one line, the compute scope."""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from yt8m_sdnn import artifacts, distribute
from yt8m_sdnn.cli import flag_sets
from yt8m_sdnn.data import reader

FLAGS = flags.FLAGS

# Errors a user fixes by changing a flag or a file: one line on stderr, exit status 1.
USER_ERRORS = (reader.DataError, artifacts.ArtifactError, FileNotFoundError, ValueError)


def _show_binary_help(binary) -> None:
  """Makes --help describe `binary`, whatever file runs as `__main__`.

  absl's --help prints `__main__`'s docstring and the key flags of the module named
  `sys.argv[0]`. Under a console script or `bin/X.py`, `__main__` is the wrapper file,
  while the flags are key flags of `yt8m_sdnn.cli.X`; both are handed to the wrapper.
  """
  for flag in FLAGS.get_key_flags_for_module(binary.__name__):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules.get("__main__")
  if main_module is not None and main_module is not binary and binary.__doc__:
    main_module.__doc__ = binary.__doc__


def run(main) -> None:
  """Runs the absl `main` of a binary, turning user-fixable errors into one line and status 1.

  With the compute flags defined, `main` runs under --mixed_precision's policy and
  inside --strategy's scope, so every model it builds is distributed.
  """
  flag_sets.define_starter_aliases()
  _show_binary_help(sys.modules[main.__module__])

  def guarded(argv):
    try:
      flag_sets.check_finite_float_flags()
      if "strategy" in FLAGS:
        precision = FLAGS.mixed_precision if "mixed_precision" in FLAGS else "float32"
        distribute.set_precision(precision)
        strategy = distribute.make_strategy(FLAGS.strategy)
        logging.info("--strategy=%s: %d replicas in sync, %d workers, --mixed_precision=%s",
                     FLAGS.strategy, strategy.num_replicas_in_sync,
                     distribute.num_workers(strategy), precision)
        with strategy.scope():
          return main(argv)
      return main(argv)
    except USER_ERRORS as error:
      print(f"{os.path.basename(sys.argv[0])}: error: {error}", file=sys.stderr)
      sys.exit(1)

  app.run(guarded)
