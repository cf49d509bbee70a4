"""How to read YT8M shards (`ReaderConfig`) and what bad data raises (`DataError`).

The lowest layer of `data`: the decoder, the scan and the reader all take a
`ReaderConfig`; `reader` re-exports these names, its public face.
"""

from __future__ import annotations

import dataclasses
import numbers

import tensorflow as tf

from yt8m_sdnn.data import formats


class DataError(ValueError):
  """A shard or record cannot be used; the message names the file and record."""


# What iterating a dataset raises on bad data. TF quotes the bytes of an unparseable
# record in its message and fails to decode them when they are not UTF-8.
READ_ERRORS = (tf.errors.OpError, UnicodeDecodeError)

# Over 20 times the largest YT8M vocabulary (4,716 classes, 2017 release). A larger
# num_classes is a typo, and would not fit in memory: every batch holds
# (batch, num_classes) float32 labels (10^9 classes: 2 TB for a batch of 512).
MAX_NUM_CLASSES = 100_000


def _is_integer(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
  """How to read YT8M shards.

  Attributes:
    data_pattern: a directory, a glob, or a comma-separated list of globs.
    num_classes: width of the multi-hot label vector (3862 for 2018, 4716 for 2017),
      at most `MAX_NUM_CLASSES`.
    feature_names: video-level names (`mean_rgb`, `mean_audio`) or, with
      `frame_level`, frame-level names (`rgb`, `audio`); concatenated in this order.
    feature_sizes: width of each feature, same order as `feature_names`.
    frame_level: read `SequenceExample` shards and mean-pool the frames.
    id_key: the video id key: `id` (2018) or `video_id` (2017).
    batch_size: videos per batch.
    training: shuffle files and records (and repeat `num_epochs` times).
    num_epochs: passes over the data; None repeats forever.
    shuffle_buffer: records held by the shuffle buffer when training.
    seed: seed of the file and record shuffles.
    deterministic: keep element order reproducible (slower interleave and map).
    require_labels: refuse records without labels (training and evaluation); set
      False to predict on test shards, whose records have no `labels` key.
    include_ids: also yield the video ids (for prediction output).
    drop_remainder: drop the last partial batch (static batch shape).
    cycle_length: shards read concurrently.
    skip_corrupt: drop unusable records (logging each) instead of stopping; this
      parses record by record, so it is slower. `scan.scan_shards` counts them.
    cache: None, a directory, or `"memory"`: decode the shards once (at the first
      `build_dataset`) and read the decoded records afterwards (`feature_cache`).
  """
  data_pattern: str
  num_classes: int = 3862
  feature_names: tuple[str, ...] = formats.VISUAL_AUDIO
  feature_sizes: tuple[int, ...] = (1024, 128)
  frame_level: bool = False
  id_key: str = "id"
  batch_size: int = 512
  training: bool = False
  num_epochs: int | None = 1
  shuffle_buffer: int = 4096
  seed: int | None = None
  deterministic: bool = False
  require_labels: bool = True
  include_ids: bool = False
  drop_remainder: bool = False
  cycle_length: int = 8
  skip_corrupt: bool = False
  cache: str | None = None

  def __post_init__(self):
    for name in ("num_classes", "batch_size", "cycle_length"):
      if not _is_integer(getattr(self, name)):
        raise ValueError(f"Expected an integer {name}. Received: {name}="
                         f"{getattr(self, name)!r}")
    if not all(_is_integer(size) for size in self.feature_sizes):
      raise ValueError(f"Expected integer feature_sizes. Received: "
                       f"feature_sizes={list(self.feature_sizes)!r}")
    if len(self.feature_names) != len(self.feature_sizes):
      raise ValueError(
          f"feature_names {list(self.feature_names)} and feature_sizes "
          f"{list(self.feature_sizes)} must have the same length")
    if not self.feature_names:
      raise ValueError("feature_names must name at least one feature")
    if any(size <= 0 for size in self.feature_sizes):
      raise ValueError(f"feature_sizes must be positive. Received: {list(self.feature_sizes)}")
    if not 0 < self.num_classes <= MAX_NUM_CLASSES:
      raise ValueError(
          f"num_classes must be in [1, {MAX_NUM_CLASSES:,}] (YT8M has 3,862 classes in 2018 "
          f"and 4,716 in 2017; more would not fit in memory). Received: "
          f"num_classes={self.num_classes!r}")
    if self.batch_size <= 0:
      raise ValueError(f"batch_size must be positive. Received: {self.batch_size}")
    if self.cache is not None and not self.cache.strip():
      raise ValueError("cache must be a directory or 'memory'. Received: cache=''")
    known = formats.FRAME_LEVEL_FEATURES if self.frame_level else formats.VIDEO_LEVEL_FEATURES
    unknown = [name for name in self.feature_names if name not in known]
    if unknown:
      kind = "frame-level" if self.frame_level else "video-level"
      raise ValueError(
          f"Expected {kind} feature names among {sorted(known)}. Received: "
          f"feature_names={list(self.feature_names)}")

  @property
  def feature_size(self) -> int:
    """Width of the concatenated feature vector the model sees."""
    return sum(self.feature_sizes)
