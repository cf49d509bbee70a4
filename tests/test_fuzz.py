"""Fuzzing the reader: mutated records and files give clean, named errors or finite data.

Each case mutates a valid shard (random bytes flipped, inserted or cut inside one
record, framing left valid; or the file itself damaged) and reads it through the
training/evaluation path. Allowed outcomes: the batch reads with finite features, or
a `DataError` naming the shard. Anything else (a raw TF error, a crash, a NaN) fails.
Bounded by a case count and a deadline so the suite stays short.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_videos
from yt8m_sdnn.data import reader, writer

NUM_CASES = 40
DEADLINE_SECONDS = 20.0


def _records(frame_level: bool) -> list[bytes]:
  ids, labels, rgb, audio = random_videos(8, 6, seed=11)
  if frame_level:
    rng = np.random.default_rng(0)
    return [writer.frame_example(ids[i], labels[i], {
        "rgb": rng.integers(0, 256, size=(3, 1024), dtype=np.uint8),
        "audio": rng.integers(0, 256, size=(3, 128), dtype=np.uint8)}).SerializeToString()
            for i in range(8)]
  return [writer.video_example(ids[i], labels[i], {"mean_rgb": rgb[i], "mean_audio": audio[i]})
          .SerializeToString() for i in range(8)]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
  data = bytearray(data)
  kind = rng.integers(3)
  position = int(rng.integers(len(data)))
  if kind == 0:  # flip a few bytes
    for index in rng.integers(len(data), size=int(rng.integers(1, 4))):
      data[index] ^= int(rng.integers(1, 256))
  elif kind == 1:  # insert random bytes
    data[position:position] = rng.integers(0, 256, size=int(rng.integers(1, 9)),
                                           dtype=np.uint8).tobytes()
  else:  # cut a piece out
    del data[position:position + int(rng.integers(1, 17))]
  return bytes(data)


def _write(path: str, records: list[bytes]) -> None:
  with tf.io.TFRecordWriter(path) as stream:
    for record in records:
      stream.write(record)


@pytest.mark.parametrize("frame_level", [False, True])
def test_mutated_shards_give_named_errors_or_finite_features(tmp_path, frame_level):
  rng = np.random.default_rng(1234 + frame_level)
  records = _records(frame_level)
  names = ("rgb", "audio") if frame_level else ("mean_rgb", "mean_audio")
  deadline = time.monotonic() + DEADLINE_SECONDS
  outcomes = {"read": 0, "DataError": 0}
  for case in range(NUM_CASES):
    if time.monotonic() > deadline:
      break
    path = str(tmp_path / f"case{case:03d}.tfrecord")
    if case % 4 == 3:  # damage the file itself: framing, lengths, checksums
      _write(path, records)
      with open(path, "rb") as stream:
        damaged = _mutate(stream.read(), rng)
      with open(path, "wb") as stream:
        stream.write(damaged)
    else:
      mutated = list(records)
      victim = int(rng.integers(len(records)))
      mutated[victim] = _mutate(records[victim], rng)
      _write(path, mutated)
    config = reader.ReaderConfig(path, num_classes=6, feature_names=names,
                                 frame_level=frame_level, batch_size=4)
    try:
      for features, _ in reader.build_dataset(config):
        assert np.isfinite(features.numpy()).all(), f"case {case}: non-finite features"
      outcomes["read"] += 1
    except reader.READ_ERRORS as error:
      explained = reader.explain_error(error, config)
      assert isinstance(explained, reader.DataError), (
          f"case {case}: unexplained {type(error).__name__}: {str(error)[:500]}")
      assert path in str(explained), f"case {case}: error does not name the file: {explained}"
      outcomes["DataError"] += 1
  assert outcomes["DataError"] > 0, outcomes  # the mutations did break something
