"""The binaries' process runner: --help, one-line errors and interrupts, the compute scope."""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from yt8m_sdnn import artifacts, distribute, interrupts
from yt8m_sdnn.cli import flag_sets
from yt8m_sdnn.data import reader

FLAGS = flags.FLAGS

# Errors a user fixes by changing a flag or a file: one line on stderr, exit status 1.
USER_ERRORS = (reader.DataError, artifacts.ArtifactError, FileNotFoundError, ValueError)


# The YT8M starter's flags that have another name or form here: flag → the way here.
STARTER_HINTS = {
    "start_new_model": "--overwrite (without it a killed run resumes, a finished one is "
                       "refused)",
    "regularization_penalty": "--weight_decay (λ, a pull of λ·w on every kernel)",
    "label_loss": "--loss (e.g. --loss=cross_entropy, focal, asymmetric)",
    "max_steps": "--num_epochs or --steps_per_epoch",
    "learning_rate_decay_examples": "--learning_rate_decay (a factor applied every epoch)",
    "num_readers": "nothing: tf.data reads in parallel by itself",
    "export_model_steps": "yt8m-export after training (per-epoch checkpoints are kept)",
    "input_model_tgz": "--train_dir (the directory yt8m-train wrote)",
    "run_once": "nothing: yt8m-eval scores once",
    "segment_labels": "nothing: segment-level labels are not supported (video-level only)",
}


def starter_flag_hints(argv: list[str]) -> list[str]:
  """One line for each starter flag in `argv` that this binary does not define."""
  hints = []
  for argument in argv[1:]:
    if argument == "--":
      break
    name = argument.lstrip("-").split("=", 1)[0]
    if name.startswith("no") and name[2:] in STARTER_HINTS:
      name = name[2:]
    if argument.startswith("-") and name in STARTER_HINTS and name not in FLAGS:
      hints.append(f"--{name} is a flag of the YT8M starter code; here: {STARTER_HINTS[name]}")
  return hints


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

  SIGINT (Ctrl-C) and SIGTERM stop a training loop or a pass at its next step
  boundary, backed up (`interrupts`); the binary then prints one line saying where it
  stopped and how the same command goes on, and exits with 130 (SIGINT) or 143
  (SIGTERM), as a shell reports a process the signal ended.
  """
  flag_sets.define_starter_aliases()
  _show_binary_help(sys.modules[main.__module__])
  hints = starter_flag_hints(sys.argv)
  if hints:
    for hint in hints:
      print(f"{os.path.basename(sys.argv[0])}: error: {hint}", file=sys.stderr)
    sys.exit(1)

  def guarded(argv):
    program = os.path.basename(sys.argv[0])
    try:
      with interrupts.handling():
        return _compute_scope(main, argv)
    except USER_ERRORS as error:
      print(f"{program}: error: {error}", file=sys.stderr)
      sys.exit(1)
    except interrupts.Interrupted as interrupted:
      print(f"{program}: {interrupted}", file=sys.stderr)
      sys.exit(interrupted.exit_status)

  app.run(guarded)


def _compute_scope(main, argv):
  """`main(argv)` under --mixed_precision's policy and in --strategy's scope, where defined."""
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
