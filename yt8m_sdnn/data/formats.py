"""What a YouTube-8M record holds: keys, widths, releases and the frame dequantization.

Video-level shards hold one `tf.train.Example` per video: an id (`id` in the 2018
release, `video_id` in 2017), `labels` (int64 list) and the mean-pooled features
`mean_rgb` (1024 floats) and `mean_audio` (128 floats). Frame-level shards hold one
`tf.train.SequenceExample` per video: the id and labels in the context, and feature
lists `rgb` / `audio` whose frames are quantized to one byte per dimension.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

LABELS_KEY = "labels"

# Frame features are stored as uint8; YT8M dequantizes with this affine map.
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0

VIDEO_LEVEL_FEATURES = {"mean_rgb": 1024, "mean_audio": 128}
FRAME_LEVEL_FEATURES = {"rgb": 1024, "audio": 128}
# Visual first, then audio: the order the paper concatenates them (section 3.3).
VISUAL_AUDIO = ("mean_rgb", "mean_audio")
VISUAL_ONLY = ("mean_rgb",)
FRAME_NAME_FOR_VIDEO_NAME = {"mean_rgb": "rgb", "mean_audio": "audio"}


@dataclasses.dataclass(frozen=True)
class Release:
  """One YouTube-8M dataset release.

  Attributes:
    name: "2018" or "2017".
    id_key: the feature key that holds the video id.
    num_classes: the size of the release's label vocabulary.
  """
  name: str
  id_key: str
  num_classes: int


RELEASES = {
    "2018": Release("2018", id_key="id", num_classes=3862),
    "2017": Release("2017", id_key="video_id", num_classes=4716),
}


def get_release(name: str) -> Release:
  """Returns the release called `name`, or raises naming the valid ones."""
  try:
    return RELEASES[name]
  except KeyError:
    raise ValueError(
        f"Expected one of {sorted(RELEASES)}. Received: release={name!r}") from None


def dequantize(quantized: tf.Tensor) -> tf.Tensor:
  """Maps uint8 frame features back to floats as YT8M does: v * 4/255 + 4/512 - 2."""
  quantized_range = QUANTIZE_MAX - QUANTIZE_MIN
  scale = quantized_range / 255.0
  bias = quantized_range / 512.0 + QUANTIZE_MIN
  return tf.cast(quantized, tf.float32) * scale + bias


def quantize(values):
  """Nearest byte whose `dequantize` gives `values` (numpy in, uint8 out), for writers."""
  quantized_range = QUANTIZE_MAX - QUANTIZE_MIN
  scaled = (np.asarray(values) - quantized_range / 512.0 - QUANTIZE_MIN) * (255.0 / quantized_range)
  return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
