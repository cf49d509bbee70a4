"""Soak: the reader and the subclass transform over many epochs keep memory flat.

A leak of even one batch per epoch (a cache, a growing buffer, retraced functions)
shows up as resident memory that keeps rising; this reads 40 epochs of small shards
through the training path (shuffle, repeat, parse, transform, rebatch) and compares
the resident set after a warm-up with the one at the end.
"""

from __future__ import annotations

import numpy as np

from conftest import l2_normalized, multi_hot, random_videos, write_video_shards
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass import augment, in_memory

NUM_EPOCHS = 40
WARM_UP_EPOCHS = 8
# Allocator noise on a loaded machine stays well under this; one leaked batch per
# epoch (32 x 1152 floats, 147 KB) would add ~5 MB over the epochs after the warm-up.
ALLOWED_GROWTH_BYTES = 24 * 2**20


def _resident_bytes() -> int:
  with open("/proc/self/statm", encoding="ascii") as stream:
    return int(stream.read().split()[1]) * 4096


def test_reader_and_transform_hold_flat_memory(tmp_path):
  ids, labels, rgb, audio = random_videos(256, 8, seed=5)
  write_video_shards(tmp_path, ids, labels, rgb, audio, num_shards=4)
  features = np.concatenate([l2_normalized(rgb), l2_normalized(audio)], axis=1)
  plan = in_memory.partition_in_memory(features, multi_hot(labels, 8), selected=[0, 3]).plan
  config = reader.ReaderConfig(str(tmp_path), num_classes=8, batch_size=32, training=True,
                               num_epochs=NUM_EPOCHS, seed=0, shuffle_buffer=128)
  transform = augment.make_subclass_transform(plan)
  dataset = reader.build_dataset(config).map(transform).rebatch(32)
  batches_per_epoch = 256 // 32
  resident = []
  for step, (batch_features, batch_labels) in enumerate(dataset):
    assert batch_labels.shape[1] == plan.layout.num_units
    if step % batches_per_epoch == 0:
      resident.append(_resident_bytes())
  assert len(resident) >= NUM_EPOCHS  # it really ran every epoch
  growth = resident[-1] - resident[WARM_UP_EPOCHS]
  assert growth < ALLOWED_GROWTH_BYTES, (
      f"resident memory grew {growth / 2**20:.1f} MiB over {NUM_EPOCHS - WARM_UP_EPOCHS} epochs")
