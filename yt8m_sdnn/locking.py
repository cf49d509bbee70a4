"""One writer per output directory: an exclusive `flock` held for the whole run.

Two runs writing the same `--train_dir` (or `yt8m-sdnn`'s work dir, or
`yt8m-partition`'s output) would mix their checkpoints, delete each other's backups and
leave the last writer's model. `exclusive(directory)` takes an exclusive, non-blocking
`fcntl.flock` on `directory/.lock`; a second run fails at once, naming the directory
and the holder's process id. The kernel releases the lock when the holding process
ends, however it ends, so a SIGKILL never leaves a stale lock; the file itself stays
(deleting it would let two runs lock two different files of the same name).

Locks are advisory and local: on object stores (`gs://`, `s3://`) there is no flock,
and the directory is not locked (a warning says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator

from absl import logging

from yt8m_sdnn import artifacts

LOCK_FILE = ".lock"


class DirectoryInUseError(artifacts.ArtifactError):
  """Another live process holds the directory's lock."""


@contextlib.contextmanager
def exclusive(directory: str, what: str = "run", lock_name: str = LOCK_FILE) -> Iterator[None]:
  """Holds an exclusive lock on `directory` (created if needed) while the block runs.

  `lock_name` names the lock file: one per output file where several outputs share a
  directory (`yt8m-partition --output`).

  Raises:
    DirectoryInUseError: another process holds it (its pid is named when known).
    artifacts.ArtifactError: the directory cannot be created or written.
  """
  artifacts.ensure_writable_dir(directory)
  if not artifacts.is_local(directory):
    logging.warning("%s: not locked (no flock on remote file systems); make sure no other "
                    "%s writes there.", directory, what)
    yield
    return
  path = os.path.join(directory, lock_name)
  handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(handle, 64, 0).decode("ascii", "replace").strip()
      raise DirectoryInUseError(
          f"{directory}: in use by another {what} (process {holder or 'unknown'}); wait for "
          "it to end or write to another directory") from None
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(handle)  # releases the lock
