"""The parsed-feature cache: shards decoded once, normalized features and labels after.

Parsing, checking and normalizing a record costs more than reading its bytes, and a
training run reads every shard once an epoch. With a cache, the first
`reader.build_dataset` decodes every shard once, in file order (every check of the
reader runs then, naming file, record and video id), and stores per source shard its
normalized features, label ids and video ids. Every dataset built afterwards reads
those instead and shuffles as before, so each epoch still gets its own order.

Why our own format rather than `tf.data`'s `cache`/`snapshot`: the reader shuffles
files, interleaves them record by record, then shuffles records. Keeping the records
of each source shard apart and in order lets the cached pipeline apply the very same
file shuffle, interleave and record shuffle, so under `deterministic` it yields the
same batches, bit for bit, as reading the shards (tested through training). A
`snapshot` of the decoded stream would freeze one order, or be rebuilt for each seed.

How a cache is read: when its arrays take at most 40% of the available memory they
are held by the process (loaded once, shared by every later `build_dataset`), and the
pipeline shuffles *positions*, int64s, through the same interleave and shuffles, then
gathers each batch's rows: faster than reading raw TFRecords. A directory cache too
large for memory is streamed record by record from its files instead (same order;
for video-level shards no faster than decoding them).

Layout of a directory cache `DIR`:
  DIR/<key>/manifest.json          settings, the source shards' fingerprints, the
                                   videos and bytes of every cache file
  DIR/<key>/shard-00000.tfrecord   one per source shard, same order: TFRecord files
                                   holding chunks of up to 512 videos as 4 records:
                                   float32 features, int32 label ids, int32 labels per
                                   video (raw little-endian bytes), and the video ids
                                   (a serialized string tensor)
`key` hashes the shard paths, sizes, modification and change times (ns) and inodes,
and the settings that change what is decoded (feature names and sizes, `num_classes`,
`id_key`, `frame_level`, `require_labels`, `skip_corrupt`, the format versions): any
change gives another key, so a stale cache is never read; the superseded cache is
deleted once the new one is complete. (A shard rewritten in place, to the same size,
within the file system's clock tick of its previous write cannot be told apart.)

Atomicity: a build writes into `DIR/.building-<key>-<host>-<pid>-<random>/` and renames
it to `DIR/<key>` once every file and the manifest are written; the manifest is read
only from a renamed directory, must match its own digest (an edited manifest, say
`max_labels` or `feature_size` changed by hand, reads as stale and the cache is
rebuilt) and the reader's feature size, and every file it lists must have its
recorded size. A killed build leaves only a `.building-*` directory, never read, and
removed by the next build on the same host once its process is gone; a full disk ends
the build with one error naming DIR, and its partial directory is deleted.

With `memory`, the decoded arrays are kept by the process only (a registry keyed like
the directories), so every `build_dataset` of the run after the first shares them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import uuid
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts

MEMORY = "memory"
# Bump when the stored layout changes: older caches then miss.
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
CHUNK_SIZE = 512
_RECORDS_PER_CHUNK = 4
_BUILDING_PREFIX = ".building-"
# A directory cache is held in memory when it takes at most this share of the
# memory available (loading it briefly needs twice that); larger ones are streamed.
_MEMORY_SHARE = 0.4

# One decoded chunk of a shard: file index, float32 (n, feature_size) features, int64
# (num_labels,) label ids, int64 (n,) labels per video, string (n,) video ids.
Chunk = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class CachedShards:
  """A complete cache of the shards of one reader configuration.

  Attributes:
    key: the cache key (see the module docstring).
    feature_size: width of the stored features.
    max_labels: the most labels a video has (labels are padded to it with -1).
    source_paths: the source shards, in `resolve_files` order.
    num_records: videos per source shard.
    shard_paths: the cache file of each source shard (directory caches).
    arrays: (features, padded labels, video ids) of all shards, concatenated in
      order, as tensors; None when a directory cache is streamed.
  """
  key: str
  feature_size: int
  max_labels: int
  source_paths: tuple[str, ...]
  num_records: tuple[int, ...]
  shard_paths: tuple[str, ...] = ()
  arrays: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None

  @property
  def in_memory(self) -> bool:
    return self.arrays is not None

  def shard_bounds(self) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last position of each shard's videos in `arrays`."""
    counts = np.asarray(self.num_records, np.int64)
    ends = np.cumsum(counts)
    return ends - counts, ends

  def shard_records(self, path: tf.Tensor, with_ids: bool) -> tf.data.Dataset:
    """The videos of one cache file: (features, labels padded with -1[, video id])."""
    decode = _chunk_decoder(self.feature_size, self.max_labels, with_ids)
    return tf.data.TFRecordDataset(path).batch(
        _RECORDS_PER_CHUNK, drop_remainder=True).map(decode).unbatch()


@tf.autograph.experimental.do_not_convert
def shard_positions(source_path: tf.Tensor, start: tf.Tensor, end: tf.Tensor
                    ) -> tf.data.Dataset:
  """Positions start..end-1 of one shard's videos in `CachedShards.arrays`.

  A reader of the source shard, never iterated (its cardinality is asked, which reads
  nothing), keeps the pipeline file-shardable: the multi-worker auto-shard rewrite
  looks for a reader op to shard the shards by.
  """
  with tf.control_dependencies([tf.data.TFRecordDataset(source_path).cardinality()]):
    start = tf.identity(start)
  return tf.data.Dataset.range(start, end)


def _chunk_decoder(feature_size: int, max_labels: int, with_ids: bool) -> Callable:
  """Decodes a chunk's 4 records into (features, labels padded with -1[, video ids])."""

  @tf.autograph.experimental.do_not_convert
  def decode(records):
    features = tf.reshape(tf.io.decode_raw(records[0], tf.float32), [-1, feature_size])
    labels = tf.RaggedTensor.from_row_lengths(
        tf.io.decode_raw(records[1], tf.int32),
        tf.cast(tf.io.decode_raw(records[2], tf.int32), tf.int64))
    padded = labels.to_tensor(default_value=-1, shape=[None, max_labels])
    if not with_ids:
      return features, padded
    return features, padded, tf.io.parse_tensor(records[3], tf.string)

  return decode


def _stat(path: str) -> dict[str, Any]:
  """What identifies a shard's content without reading it."""
  if "://" in path:
    stat = tf.io.gfile.stat(path)  # remote file systems: size and mtime only
    return {"path": path, "size": int(stat.length), "mtime_ns": int(stat.mtime_nsec)}
  # Locally in nanoseconds (gfile rounds to seconds); an atomic rewrite (a rename
  # onto the path) also changes the inode.
  stat = os.stat(path)
  return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
          "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino}


def _digest(payload: Any) -> str:
  return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def fingerprint(files: list[str], settings: Mapping[str, Any]) -> dict[str, Any]:
  """The cache identity of `files` decoded with `settings`: key, lineage and stats.

  `lineage` ignores the shards' stats: two caches with the same lineage and different
  keys hold the same shards before and after a change, so the older can go.
  """
  settings = dict(settings, cache_format=FORMAT_VERSION)
  stats = [_stat(path) for path in files]
  return {"key": _digest({"settings": settings, "files": stats}),
          "lineage": _digest({"settings": settings, "files": list(files)}),
          "settings": settings, "files": stats}


class _ShardWriter:
  """Collects one shard's decoded chunks and writes (or keeps) them in CHUNK_SIZE pieces."""

  def __init__(self, path: str | None):
    self.path = path
    self._writer = tf.io.TFRecordWriter(path) if path else None
    self._pending: list[tuple] = []
    self.kept: list[tuple] = []
    self.num_records = 0
    self.max_labels = 0

  def add(self, features, label_values, label_counts, ids) -> None:
    self.num_records += len(ids)
    if len(label_counts):
      self.max_labels = max(self.max_labels, int(label_counts.max()))
    self._pending.append((features, label_values, label_counts, ids))
    if sum(len(part[3]) for part in self._pending) >= CHUNK_SIZE:
      self._flush()

  def _flush(self) -> None:
    if not self._pending:
      return
    features, label_values, label_counts, ids = (
        np.concatenate([part[i] for part in self._pending]) for i in range(4))
    self._pending = []
    if self._writer is None:
      self.kept.append((features, label_values, label_counts, ids))
      return
    self._writer.write(np.ascontiguousarray(features, "<f4").tobytes())
    self._writer.write(np.asarray(label_values, "<i4").tobytes())
    self._writer.write(np.asarray(label_counts, "<i4").tobytes())
    self._writer.write(tf.io.serialize_tensor(tf.constant(ids, tf.string)).numpy())

  def close(self) -> None:
    try:
      self._flush()
    except BaseException:
      self.abandon()
      raise
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def abandon(self) -> None:
    """Closes the file after a failed write (a full disk), keeping the first error."""
    writer, self._writer = self._writer, None
    if writer is not None:
      try:
        writer.close()
      except tf.errors.OpError:
        pass  # the file is deleted with its build directory


def _write_shards(chunks: Iterable[Chunk], num_files: int, directory: str | None
                  ) -> list[_ShardWriter]:
  """Per source shard, its written (or, without `directory`, kept) chunks.

  `chunks` must come shard after shard; one file is open at a time.
  """

  def writer(index):
    return _ShardWriter(
        os.path.join(directory, f"shard-{index:05d}.tfrecord") if directory else None)

  writers: list[_ShardWriter] = []
  try:
    for file_index, features, label_values, label_counts, ids in chunks:
      if int(file_index) < len(writers) - 1:
        raise RuntimeError("decoded chunks must come shard after shard")
      while len(writers) <= int(file_index):  # shards without records too
        if writers:
          writers[-1].close()
        writers.append(writer(len(writers)))
      writers[-1].add(features, label_values, label_counts, ids)
    while len(writers) < num_files:
      if writers:
        writers[-1].close()
      writers.append(writer(len(writers)))
    if writers:
      writers[-1].close()
  except BaseException:
    if writers:
      writers[-1].abandon()  # its file closed, so a full disk can be unmounted or cleaned
    raise
  return writers


def _pad_labels(label_values: np.ndarray, label_counts: np.ndarray, width: int) -> np.ndarray:
  """(n, width) int32 label ids padded with -1, from flat ids and counts per video."""
  padded = np.full((len(label_counts), width), -1, np.int32)
  rows = np.repeat(np.arange(len(label_counts)), label_counts)
  starts = np.repeat(np.cumsum(label_counts) - label_counts, label_counts)
  padded[rows, np.arange(len(label_values)) - starts] = label_values
  return padded


class _Arrays:
  """The concatenated arrays of a cache, filled chunk by chunk (no second copy)."""

  def __init__(self, num_videos: int, feature_size: int, max_labels: int):
    self.features = np.empty((num_videos, feature_size), np.float32)
    self.labels = np.empty((num_videos, max_labels), np.int32)
    self.ids = np.empty((num_videos,), object)
    self.filled = 0

  def add(self, features, label_values, label_counts, ids) -> None:
    rows = slice(self.filled, self.filled + len(ids))
    self.features[rows] = features
    self.labels[rows] = _pad_labels(label_values, label_counts, self.labels.shape[1])
    self.ids[rows] = ids
    self.filled += len(ids)

  def tensors(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    return (tf.constant(self.features), tf.constant(self.labels),
            tf.constant(self.ids, tf.string))


# The caches this process holds in memory: (location, key) -> (lineage, cache).
_HELD: dict[tuple[str, str], tuple[str, CachedShards]] = {}


def clear_memory() -> None:
  """Forgets every cache this process holds in memory (the next read loads or decodes)."""
  _HELD.clear()


def _hold(location: str, identity, cached: CachedShards) -> CachedShards:
  for held in [held for held, (lineage, _) in _HELD.items()
               if held[0] == location and lineage == identity["lineage"]]:
    del _HELD[held]  # the same shards before they changed
  _HELD[(location, identity["key"])] = (identity["lineage"], cached)
  return cached


def _available_memory() -> int:
  try:
    with open("/proc/meminfo") as stream:
      for line in stream:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _load(cached: CachedShards) -> CachedShards:
  """`cached` with its files' arrays held in memory."""
  records = tf.data.TFRecordDataset(list(cached.shard_paths)).batch(
      _RECORDS_PER_CHUNK, drop_remainder=True)
  arrays = _Arrays(sum(cached.num_records), cached.feature_size, cached.max_labels)
  for chunk in records.as_numpy_iterator():
    arrays.add(np.frombuffer(chunk[0], "<f4").reshape(-1, cached.feature_size),
               np.frombuffer(chunk[1], "<i4"), np.frombuffer(chunk[2], "<i4"),
               tf.io.parse_tensor(chunk[3], tf.string).numpy())
  if arrays.filled != sum(cached.num_records):
    raise tf.errors.DataLossError(None, None, f"{cached.shard_paths[0]}...: the cache files "
                                  "hold another number of videos than their manifest")
  return dataclasses.replace(cached, arrays=arrays.tensors())


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
  """The digest of a manifest's content, so an edited manifest reads as stale."""
  return _digest({key: value for key, value in manifest.items() if key != "digest"})


def _manifest_problem(manifest: Mapping[str, Any], identity, feature_size: int) -> str | None:
  """Why a manifest cannot be trusted for `identity`, or None."""
  if manifest.get("digest") != _manifest_digest(manifest):
    return "its manifest was edited or is from an older version (its digest differs)"
  if manifest.get("key") != identity["key"] or len(manifest.get("shards", [])) != len(
      identity["files"]):
    return "its manifest is for other shards or settings"
  if manifest.get("feature_size") != feature_size:
    return (f"its manifest says {manifest.get('feature_size')!r} features a video, the reader "
            f"{feature_size}")
  max_labels = manifest.get("max_labels")
  if not isinstance(max_labels, int) or isinstance(max_labels, bool) or max_labels < 1:
    return f"its manifest says max_labels={max_labels!r}"
  return None


def _open_directory(target: str, identity, feature_size: int) -> CachedShards | None:
  """The complete cache in `target` (not loaded), or None when absent or incomplete."""
  manifest_path = os.path.join(target, MANIFEST_FILE)
  if not tf.io.gfile.exists(manifest_path):
    return None
  try:
    manifest = artifacts.read_json(manifest_path)
  except artifacts.ArtifactError as error:
    logging.warning("ignoring the feature cache %s: %s", target, error)
    return None
  problem = _manifest_problem(manifest, identity, feature_size)
  shards = manifest.get("shards", []) if problem is None else []
  for shard in shards:
    path = os.path.join(target, shard["file"])
    if problem is None and (not tf.io.gfile.exists(path) or
                            tf.io.gfile.stat(path).length != shard["bytes"]):
      problem = f"{path} is missing or its size is not the manifest's"
  if problem:
    logging.warning("ignoring the feature cache %s: %s", target, problem)
    return None
  return CachedShards(
      key=manifest["key"], feature_size=int(manifest["feature_size"]),
      max_labels=int(manifest["max_labels"]),
      source_paths=tuple(source["path"] for source in identity["files"]),
      num_records=tuple(int(shard["records"]) for shard in shards),
      shard_paths=tuple(os.path.join(target, shard["file"]) for shard in shards))


def _remove_stale_builds(location: str) -> None:
  """Deletes `.building-*` directories of this host whose process is gone."""
  host = socket.gethostname()
  for name in tf.io.gfile.listdir(location):
    name = name.rstrip("/")
    if not name.startswith(_BUILDING_PREFIX):
      continue
    fields = name[len(_BUILDING_PREFIX):].split("-")
    if len(fields) < 4 or "-".join(fields[1:-2]) != host or not fields[-2].isdigit():
      continue
    try:
      os.kill(int(fields[-2]), 0)
      continue  # its process still runs
    except ProcessLookupError:
      pass
    except PermissionError:
      continue
    logging.info("removing %s, left by a killed cache build", name)
    tf.io.gfile.rmtree(os.path.join(location, name))


def _remove_superseded(location: str, identity) -> None:
  """Deletes complete caches of the same shards and settings from before a change."""
  for name in tf.io.gfile.listdir(location):
    name = name.rstrip("/")
    manifest_path = os.path.join(location, name, MANIFEST_FILE)
    if name == identity["key"] or name.startswith(".") or not tf.io.gfile.exists(manifest_path):
      continue
    try:
      lineage = artifacts.read_json(manifest_path).get("lineage")
    except artifacts.ArtifactError:
      continue
    if lineage == identity["lineage"]:
      logging.info("removing the superseded feature cache %s", os.path.join(location, name))
      tf.io.gfile.rmtree(os.path.join(location, name))


def _build_directory(location: str, identity, chunks: Iterable[Chunk],
                     feature_size: int) -> CachedShards:
  artifacts.ensure_writable_dir(location)
  _remove_stale_builds(location)
  target = os.path.join(location, identity["key"])
  building = os.path.join(location, f"{_BUILDING_PREFIX}{identity['key']}-"
                          f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
  try:
    tf.io.gfile.makedirs(building)
    writers = _write_shards(chunks, len(identity["files"]), building)
    shards = [{"file": os.path.basename(writer.path), "records": writer.num_records,
               "bytes": int(tf.io.gfile.stat(writer.path).length)} for writer in writers]
    manifest = {
        "key": identity["key"], "lineage": identity["lineage"],
        "settings": identity["settings"], "sources": identity["files"],
        "feature_size": feature_size,
        "max_labels": max([1] + [writer.max_labels for writer in writers]),
        "shards": shards}
    manifest["digest"] = _manifest_digest(manifest)
    artifacts.write_json(os.path.join(building, MANIFEST_FILE), manifest)
    try:
      tf.io.gfile.rename(building, target)
    except (tf.errors.OpError, OSError):
      if _open_directory(target, identity, feature_size) is None:
        raise
      logging.info("another process completed %s first; using it", target)
  except (tf.errors.OpError, OSError, artifacts.ArtifactError) as error:
    if not artifacts.is_disk_full(error):
      raise
    written = _bytes_under(building)
    raise artifacts.ArtifactError(
        f"{location}: no space left on the device for the feature cache "
        f"({written / 2**20:.1f} MB of it had been written; all of it is deleted, nothing "
        "half-written is kept). Free some space, or choose another --cache (a directory "
        "on a larger disk, or 'memory')") from None
  finally:
    if tf.io.gfile.exists(building):
      tf.io.gfile.rmtree(building)
  _remove_superseded(location, identity)
  logging.info("feature cache complete: %s (%d videos)", target,
               sum(shard["records"] for shard in shards))
  return _open_directory(target, identity, feature_size)


def _bytes_under(directory: str) -> int:
  """The bytes of the files in `directory` (0 when it is gone)."""
  if not tf.io.gfile.exists(directory):
    return 0
  return sum(tf.io.gfile.stat(os.path.join(directory, name)).length
             for name in tf.io.gfile.listdir(directory)
             if not tf.io.gfile.isdir(os.path.join(directory, name)))


def _complete_directory(location: str, identity, chunks: Callable[[], Iterable[Chunk]],
                        feature_size: int) -> CachedShards:
  """The complete directory cache of `identity`, built first when there is none."""
  target = os.path.join(location, identity["key"])
  cached = _open_directory(target, identity, feature_size)
  if cached is None:
    if tf.io.gfile.exists(target):
      tf.io.gfile.rmtree(target)  # incomplete or damaged: never read
    logging.info("decoding %d shards into the feature cache %s", len(identity["files"]), target)
    cached = _build_directory(location, identity, chunks(), feature_size)
  return cached


def open_or_build(location: str, files: list[str], settings: Mapping[str, Any],
                  chunks: Callable[[], Iterable[Chunk]], feature_size: int) -> CachedShards:
  """The complete cache of `files` under `location`, built first when there is none.

  Args:
    location: a directory (local or any TF file system), or `MEMORY`.
    files: the source shards, in reading order.
    settings: what changes the decoded values (part of the key).
    chunks: returns every shard's decoded chunks, shards in order and records in
      order within a shard; called only when the cache must be built.
    feature_size: width of the decoded features.

  Returns:
    The `CachedShards`, held in memory unless a directory cache is too large.
  """
  identity = fingerprint(files, settings)
  held = _HELD.get((location, identity["key"]))
  if held is not None:
    return held[1]
  if location == MEMORY:
    logging.info("decoding %d shards into the in-memory feature cache", len(files))
    writers = _write_shards(chunks(), len(files), None)
    max_labels = max([1] + [writer.max_labels for writer in writers])
    arrays = _Arrays(sum(writer.num_records for writer in writers), feature_size, max_labels)
    for writer in writers:
      while writer.kept:
        arrays.add(*writer.kept.pop(0))  # each piece freed once copied
    return _hold(location, identity, CachedShards(
        key=identity["key"], feature_size=feature_size, max_labels=max_labels,
        source_paths=tuple(files), num_records=tuple(writer.num_records for writer in writers),
        arrays=arrays.tensors()))
  target = os.path.join(location, identity["key"])
  cached = _complete_directory(location, identity, chunks, feature_size)
  size = sum(tf.io.gfile.stat(path).length for path in cached.shard_paths)
  if size > _MEMORY_SHARE * _available_memory():
    logging.info("streaming the feature cache %s from disk (%.1f GB; too large to hold)",
                 target, size / 2**30)
    return cached
  try:
    loaded = _load(cached)
  # A damaged file (its checksums), or files that do not hold what the manifest says
  # (their shapes): decode afresh.
  except (tf.errors.OpError, ValueError, IndexError) as error:
    logging.warning("the feature cache %s is damaged (%s); rebuilding it", target,
                    str(error).strip().splitlines()[0][:200])
    tf.io.gfile.rmtree(target)
    loaded = _load(_complete_directory(location, identity, chunks, feature_size))
  return _hold(location, identity, loaded)
