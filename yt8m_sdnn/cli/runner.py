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
    _quiet_h5py_disk_full_closes()
    try:
      with interrupts.handling():
        return _compute_scope(main, argv)
    except USER_ERRORS as error:
      print(f"{program}: error: {error}", file=sys.stderr)
      if artifacts.is_disk_full(error):
        # A full disk under a backup or checkpoint (Keras writes them with HDF5) leaves
        # HDF5 holding ids it could not close, and its exit handler crashes on them:
        # the one-line error was followed by a segfault (exit 139). The process ends
        # here, before the C libraries' exit handlers run; nothing is left to write
        # (every artifact is written atomically).
        _exit_now(1)
      sys.exit(1)
    except interrupts.Interrupted as interrupted:
      print(f"{program}: {interrupted}", file=sys.stderr)
      sys.exit(interrupted.exit_status)

  app.run(guarded)


def _exit_now(status: int) -> None:
  """Ends the process with `status` once the output is flushed, skipping exit handlers."""
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def _is_h5py_disk_full_close(error: BaseException | None, traceback) -> bool:
  """Whether `error` is h5py failing to close an object on a full disk."""
  text = str(error)
  frames = []
  while traceback is not None:
    frames.append(traceback.tb_frame.f_code.co_filename)
    traceback = traceback.tb_next
  return (isinstance(error, (OSError, RuntimeError)) and any("h5py" in f for f in frames)
          and ("No space left on device" in text or "errno = 28" in text))


def _quiet_h5py_disk_full_closes() -> None:
  """Drops h5py's reports of the objects it fails to close on a full disk.

  h5py prints each one as an ignored exception with its traceback (through
  `sys.excepthook`, then `sys.unraisablehook`); the run's own error already says the
  disk is full, in one line. Every other report goes to the hook as before.
  """
  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def quiet_excepthook(error_type, error, traceback):
    if not _is_h5py_disk_full_close(error, traceback):
      excepthook(error_type, error, traceback)

  def quiet_unraisablehook(unraisable):
    if not _is_h5py_disk_full_close(unraisable.exc_value, unraisable.exc_traceback):
      unraisablehook(unraisable)

  sys.excepthook, sys.unraisablehook = quiet_excepthook, quiet_unraisablehook


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
