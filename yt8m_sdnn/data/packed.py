"""Video-level YT8M in one compact `.npz` that numpy alone reads (no TensorFlow).

For machines without TensorFlow (a GPU host running Keras on JAX) and for transfers
with a size limit: `bench.pack_real` turns TFRecord shards into one file of about
1 kB a video (the 29,213 real videos: 28.4 MB).

- Features: the raw video-level features, quantized to 8 bits on YT8M's own grid.
  YT8M's frame features are 8-bit with the starter's `Dequantize` (range [-2, 2]:
  x = q · 4/255 + 4/512 − 2), and the video-level means lie on that range's ends
  exactly (−1.9921875 to 2.0078125); quantizing them to the nearest grid point errs by
  at most 4/255/2 ≈ 0.0078 per value (the video-level vectors have norms ≈ 13.6 visual,
  ≈ 7.5 audio, so ≈ 0.1% relative). `load_packed` dequantizes and L2-normalizes each
  feature as the tf.data reader does.
- Labels: sparse, as in the shards: `label_indices` (int16) sliced by `label_offsets`.
- Ids, the shard each video came from, and a named split of the shards (for instance
  the converged-evidence protocol's train / validation / test) so a consumer trains,
  early-stops and tests on the same videos as the TF runs.

Read with `allow_pickle=False`; written to a temporary file and renamed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Mapping, Sequence

import numpy as np

FORMAT = "yt8m_sdnn.packed/1"
PACKED_FILE = "yt8m_video_level.npz"
# The YT8M starter's Dequantize(max_quantized_value=2, min_quantized_value=-2).
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
SCALE = (QUANTIZE_MAX - QUANTIZE_MIN) / 255.0
BIAS = (QUANTIZE_MAX - QUANTIZE_MIN) / 512.0 + QUANTIZE_MIN
MAX_ERROR = SCALE / 2  # for values inside the grid's range


def quantize(values: np.ndarray) -> np.ndarray:
  """Nearest point of the 8-bit grid (values outside it are clipped to its ends)."""
  return np.clip(np.rint((np.asarray(values, np.float64) - BIAS) / SCALE), 0, 255).astype(
      np.uint8)


def dequantize(quantized: np.ndarray) -> np.ndarray:
  """The starter's `Dequantize`: q · scale + bias, as float32."""
  return (quantized.astype(np.float32) * np.float32(SCALE) + np.float32(BIAS)).astype(np.float32)


def l2_normalize_parts(values: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
  """Each feature's columns divided by their row norm (floored at 1e-6), as the reader."""
  parts, start = [], 0
  for size in sizes:
    part = values[:, start:start + size]
    square_sums = np.sum(np.square(part, dtype=np.float32), axis=1, keepdims=True)
    parts.append(part / np.sqrt(np.maximum(square_sums, np.float32(1e-12))))
    start += size
  return np.concatenate(parts, axis=1).astype(np.float32)


@dataclasses.dataclass
class PackedData:
  """Videos of a packed file (all of them, or one split's).

  Attributes:
    features: (videos, Σ sizes) float32, dequantized and L2-normalized per feature.
    label_offsets: (videos + 1,) int64; video v's labels are
      `label_indices[label_offsets[v]:label_offsets[v + 1]]`.
    label_indices: int16 class ids.
    ids: (videos,) video ids (str).
    shard: (videos,) index of each video's shard in `shard_names`.
    shard_names: the source shards' file names.
    feature_names, feature_sizes, num_classes: as the reader's settings.
    splits: split name → shard file names.
  """
  features: np.ndarray
  label_offsets: np.ndarray
  label_indices: np.ndarray
  ids: np.ndarray
  shard: np.ndarray
  shard_names: list[str]
  feature_names: list[str]
  feature_sizes: list[int]
  num_classes: int
  splits: dict[str, list[str]]

  @property
  def num_videos(self) -> int:
    return int(self.features.shape[0])

  def dense_labels(self, rows: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), num_classes) float32 multi-hot labels of `rows` (default: all)."""
    rows = np.arange(self.num_videos) if rows is None else np.asarray(rows)
    starts, ends = self.label_offsets[rows], self.label_offsets[rows + 1]
    dense = np.zeros((rows.size, self.num_classes), np.float32)
    dense[np.repeat(np.arange(rows.size), ends - starts),
          self.label_indices[_ranges(starts, ends)]] = 1.0
    return dense

  def split(self, name: str) -> "PackedData":
    """The videos of split `name`'s shards, in file order."""
    if name not in self.splits:
      raise KeyError(f"no split {name!r}; the file has {sorted(self.splits)}")
    wanted = {self.shard_names.index(shard) for shard in self.splits[name]}
    rows = np.flatnonzero(np.isin(self.shard, sorted(wanted)))
    starts, ends = self.label_offsets[rows], self.label_offsets[rows + 1]
    flat = _ranges(starts, ends)
    return dataclasses.replace(
        self, features=self.features[rows],
        label_offsets=np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64),
        label_indices=self.label_indices[flat], ids=self.ids[rows], shard=self.shard[rows])


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
  """The concatenation of arange(start, end) for each pair, without a Python loop."""
  counts = ends - starts
  firsts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  return np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - firsts, counts)


def save_packed(path: str, features: np.ndarray, labels: Sequence[Sequence[int]],
                ids: Sequence[str], shard: np.ndarray, shard_names: Sequence[str],
                feature_names: Sequence[str], feature_sizes: Sequence[int], num_classes: int,
                splits: Mapping[str, Sequence[str]], source: str = "") -> None:
  """Quantizes raw `features` and writes everything to `path` atomically."""
  if num_classes > np.iinfo(np.int16).max + 1:
    raise ValueError(f"num_classes={num_classes} does not fit the int16 label indices")
  for name, shards in splits.items():
    unknown = sorted(set(shards) - set(shard_names))
    if unknown:
      raise ValueError(f"split {name!r} names shards that were not packed: {unknown[:3]}")
  counts = np.array([len(row) for row in labels], np.int64)
  indices = np.concatenate([np.asarray(row, np.int64) for row in labels]) if len(labels) else \
      np.zeros(0, np.int64)
  if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
    raise ValueError(f"label ids outside [0, {num_classes})")
  metadata = {"format": FORMAT, "num_classes": int(num_classes),
              "feature_names": list(feature_names), "feature_sizes": [int(s) for s in feature_sizes],
              "quantization": {"scale": SCALE, "bias": BIAS}, "splits": {
                  name: list(shards) for name, shards in splits.items()}, "source": source}
  arrays = {"features": quantize(features),
            "label_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "label_indices": indices.astype(np.int16),
            "ids": np.asarray(list(ids), dtype=np.str_),
            "shard": np.asarray(shard, np.int32),
            "shard_names": np.asarray(list(shard_names), dtype=np.str_),
            "metadata": np.asarray(json.dumps(metadata))}
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                       suffix=".tmp.npz", dir=directory)
  os.close(handle)
  try:
    np.savez_compressed(temporary, **arrays)
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def load_packed(path: str) -> PackedData:
  """Reads a packed file (numpy only, `allow_pickle=False`).

  Raises:
    ValueError: naming `path`, when it is not a packed file of this format.
  """
  try:
    with np.load(path, allow_pickle=False) as archive:
      arrays = {name: archive[name] for name in archive.files}
  except (OSError, ValueError, EOFError) as error:
    raise ValueError(f"{path}: not a readable packed .npz ({error})") from None
  try:
    metadata = json.loads(str(arrays["metadata"]))
  except (KeyError, json.JSONDecodeError) as error:
    raise ValueError(f"{path}: no packed metadata ({error}); make it with bench.pack_real") \
        from None
  if metadata.get("format") != FORMAT:
    raise ValueError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
  sizes = metadata["feature_sizes"]
  return PackedData(
      features=l2_normalize_parts(dequantize(arrays["features"]), sizes),
      label_offsets=arrays["label_offsets"].astype(np.int64),
      label_indices=arrays["label_indices"].astype(np.int64), ids=arrays["ids"],
      shard=arrays["shard"], shard_names=[str(n) for n in arrays["shard_names"]],
      feature_names=list(metadata["feature_names"]), feature_sizes=list(sizes),
      num_classes=int(metadata["num_classes"]), splits=dict(metadata["splits"]))
