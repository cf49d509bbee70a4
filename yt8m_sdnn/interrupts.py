"""Stopping a run cleanly at SIGINT (Ctrl-C) or SIGTERM, and cleaning up after a killed one.

Python's default Ctrl-C raises `KeyboardInterrupt` wherever the signal lands, inside a
write as readily as between two steps, and SIGTERM (how `kill` and schedulers stop a
job) ends the process on the spot. Here both are requests: inside `deferred()` (a
training loop, Algorithm 1's passes) the first signal only sets a flag, which the loop
reads at its next step boundary (`pending`); it backs up what it has and raises
`Interrupted`. A second signal stops at once. Outside `deferred()` a signal raises
`Interrupted` where it lands, which the atomic writes (`artifacts.atomic_write_path`)
survive. The binaries' process runner turns `Interrupted` into one line and the shell's
exit status for a signal, 128 + its number: 130 for SIGINT, 143 for SIGTERM.

A run killed outright (SIGKILL, a crash, a power cut) cleans nothing up: the hidden
temporary files of its atomic writes are removed by the next run in that directory
(`remove_orphaned_temporaries`).

Signal handlers belong to the process, so the requests are process state, and
handlers can only be installed from the main thread; elsewhere `deferred()` leaves
Python's defaults in place.

Example:
  with interrupts.deferred():
    for step in steps:
      train(step)
      if interrupts.pending() is not None:
        back_up(step)
        raise interrupts.Interrupted(interrupts.pending(), detail="at step ...")
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from typing import Container, Iterator

try:
  import tensorflow as tf
  _gfile = tf.io.gfile
except ImportError:  # a Keras-on-JAX host without TensorFlow: local files only
  _gfile = None

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
  """A run stopped by SIGINT or SIGTERM; `str()` is the one line a binary prints.

  A `BaseException`, as `KeyboardInterrupt` is, so that `except Exception` clauses
  on the way up let it through.

  Attributes:
    signal_number: the signal that stopped the run.
    at_once: a second signal stopped it where it landed, not at a step boundary.
    detail: where it stopped and how to go on, set by the code that knows (training:
      the epoch, the step and the backup that the same command resumes from).
  """

  def __init__(self, signal_number: int, at_once: bool = False, detail: str = ""):
    super().__init__(signal_number)
    self.signal_number = int(signal_number)
    self.at_once = at_once
    self.detail = detail

  @property
  def signal_name(self) -> str:
    return signal.Signals(self.signal_number).name

  @property
  def exit_status(self) -> int:
    """128 + the signal number, what a shell reports for a process the signal ended."""
    return 128 + self.signal_number

  def __str__(self) -> str:
    how = f"stopped at once by a second {self.signal_name}" if self.at_once else (
        f"stopped by {self.signal_name}")
    return how + (f" {self.detail}" if self.detail else "")


class _Requests:
  """The process's signal handler and the signal waiting for a step boundary."""

  def __init__(self):
    self.installed = 0  # nested `handling()` blocks
    self.previous: dict[int, object] = {}
    self.depth = 0  # nested `deferred()` blocks
    self.pending: int | None = None

  def handle(self, signal_number, frame) -> None:
    del frame
    if self.depth == 0:
      raise Interrupted(signal_number)
    if self.pending is not None:
      raise Interrupted(signal_number, at_once=True)
    self.pending = signal_number


_REQUESTS = _Requests()


@contextlib.contextmanager
def handling() -> Iterator[None]:
  """Within: SIGINT and SIGTERM raise `Interrupted` (or wait in `deferred()`).

  The previous handlers come back on exit. Nested blocks install once. Outside the
  main thread nothing changes (Python accepts handlers from the main thread only).
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  if _REQUESTS.installed == 0:
    _REQUESTS.previous = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
      signal.signal(number, _REQUESTS.handle)
  _REQUESTS.installed += 1
  try:
    yield
  finally:
    _REQUESTS.installed -= 1
    if _REQUESTS.installed == 0:
      for number, previous in _REQUESTS.previous.items():
        signal.signal(number, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """Within: the first SIGINT or SIGTERM waits for the code to call `pending()`.

  Code inside checks `pending()` at its step boundaries, backs up and raises
  `Interrupted`. A signal still pending when the outermost block ends (it came after
  the last check) is raised then; a second signal raises at once.

  Raises:
    Interrupted: on leaving the block, for a signal no check has seen.
  """
  with handling():
    _REQUESTS.depth += 1
    try:
      yield
    finally:
      _REQUESTS.depth -= 1
      unseen = _REQUESTS.pending if _REQUESTS.depth == 0 else None
      if _REQUESTS.depth == 0:
        _REQUESTS.pending = None
    if unseen is not None:
      raise Interrupted(unseen)


def pending() -> int | None:
  """The signal waiting for a step boundary (inside `deferred()`), or None."""
  return _REQUESTS.pending


def check(detail: str = "") -> None:
  """Raises `Interrupted` when a signal is pending: a step boundary with nothing to back up.

  Raises:
    Interrupted: with `detail`, when a signal is pending.
  """
  if _REQUESTS.pending is not None:
    raise Interrupted(_REQUESTS.pending, detail=detail)


# `artifacts.atomic_write_path` writes ".NAME.XXXXXXXX.tmpSUFFIX" beside NAME (mkstemp's
# 8 random characters), and renames it onto NAME once written.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9.]+)?$")


def orphaned_target(name: str) -> str | None:
  """The file that `name` was a temporary of (see `artifacts.atomic_write_path`), or None."""
  match = _TEMPORARY.match(name)
  return match.group("target") if match else None


def remove_orphaned_temporaries(directory: str, targets: Container[str] | None = None) -> int:
  """Deletes the temporary files a killed run's atomic writes left in `directory`.

  A process killed while writing (SIGKILL, a crash) leaves its hidden temporary file;
  for the paper's CNN a checkpoint's is 1.7 GB. Only safe where no other process may be
  writing the same files: call it with the directory's lock held (`locking.exclusive`).

  Args:
    directory: the directory to clean (nothing happens when it does not exist).
    targets: remove only the temporaries of these file names; None: all of them.

  Returns:
    The number of files removed.
  """
  isdir, listdir, remove = ((_gfile.isdir, _gfile.listdir, _gfile.remove) if _gfile else
                            (os.path.isdir, os.listdir, os.remove))
  if not isdir(directory):
    return 0
  removed = 0
  for name in sorted(listdir(directory)):
    target = orphaned_target(name.rstrip("/"))
    if target is None or (targets is not None and target not in targets):
      continue
    path = os.path.join(directory, name)
    if isdir(path):  # a directory of that name is not an atomic write's temporary
      continue
    remove(path)
    removed += 1
  return removed
