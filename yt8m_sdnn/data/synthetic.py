"""Synthetic YouTube-8M shards with a planted structure that makes neglected classes.

The shards are real YT8M records (same keys, types and widths, 2018 release), so every
tool that reads YT8M reads them. What is planted, and why:
- Long-tailed class frequencies (Zipf, exponent `zipf_exponent`), about 3 labels per
  video (1 + Poisson(2), capped at 10): the label statistics of YT8M.
- Every class c has a random unit direction u_c in the 1024+128-d feature space; a
  video's features are a shared offset m0, plus `signal` × u_c for each of its labels,
  plus isotropic Gaussian noise. Easy classes are thus one linearly separable mode.
- "Hard" classes (`num_hard_classes`, spread over the frequency ranks) put their
  videos in two unequal modes on opposite sides of the global mean: +u_h for a share
  `major_mode_share` of them, −u_h for the rest. Each mode is linearly separable from
  the other videos, the class as a whole is not, and the gradients of its positive
  observations in the two modes cancel in the output layer: the situation the paper's
  neglection score θ detects and its subclass split (Algorithm 1) undoes.
Everything is drawn with vectorized numpy from one seed; serialization to protobuf is
the only per-record cost. The hard classes go to `OUTPUT/hard_classes.json`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from yt8m_sdnn import artifacts
from yt8m_sdnn.data import formats, writer


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """What to generate.

  Attributes:
    output_dir: receives `train/`, `validate/` and `hard_classes.json`.
    num_classes: label vocabulary size.
    num_train: training videos.
    num_validate: validation videos.
    num_shards: shards per split.
    num_hard_classes: classes with two opposite modes.
    seed: seed of every random draw.
    frame_level: write `SequenceExample` shards with quantized frames instead.
    num_frames: frames per video for frame-level shards.
    signal: length of a class's contribution relative to the noise's per-axis scale
      times sqrt(feature width); larger is easier.
    noise: per-axis standard deviation of the noise.
    zipf_exponent: tail heaviness of the class frequencies.
    major_mode_share: share of a hard class's videos in its larger mode.
  """
  output_dir: str
  num_classes: int = 100
  num_train: int = 8000
  num_validate: int = 2000
  num_shards: int = 4
  num_hard_classes: int = 10
  seed: int = 0
  frame_level: bool = False
  num_frames: int = 6
  signal: float = 0.6
  noise: float = 0.03
  zipf_exponent: float = 0.8
  major_mode_share: float = 0.65

  def __post_init__(self):
    for name in ("num_classes", "num_train", "num_validate", "num_shards", "num_frames"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
    if not 0 <= self.num_hard_classes <= self.num_classes:
      raise ValueError(
          f"num_hard_classes must be in [0, num_classes={self.num_classes}]. "
          f"Received: num_hard_classes={self.num_hard_classes}")
    if not 0.5 <= self.major_mode_share < 1:
      raise ValueError(f"major_mode_share must be in [0.5, 1). Received: {self.major_mode_share}")


_FEATURE_SIZES = dict(formats.VIDEO_LEVEL_FEATURES)
_FEATURE_SIZE = sum(_FEATURE_SIZES.values())


def class_frequencies(num_classes: int, exponent: float) -> np.ndarray:
  """Zipf-like probabilities over classes, class 0 the most frequent."""
  weights = 1.0 / np.arange(1, num_classes + 1) ** exponent
  return weights / weights.sum()


def hard_class_ids(num_classes: int, num_hard_classes: int) -> np.ndarray:
  """Hard classes spread evenly over the frequency ranks (head, body and tail)."""
  if num_hard_classes == 0:
    return np.zeros(0, np.int64)
  return np.unique(np.linspace(1, num_classes - 1, num_hard_classes).round().astype(np.int64))


def draw_labels(rng: np.random.Generator, num_videos: int, probabilities: np.ndarray,
                max_labels: int = 10) -> np.ndarray:
  """Multi-hot (videos × classes) bool labels, 1 + Poisson(2) labels a video."""
  num_classes = probabilities.size
  counts = np.minimum(1 + rng.poisson(2.0, num_videos), min(max_labels, num_classes))
  # Gumbel top-k draws classes without replacement, in one vectorized step.
  keys = np.log(probabilities)[None, :] - np.log(-np.log(rng.random((num_videos, num_classes))))
  order = np.argsort(-keys, axis=1)
  ranks = np.empty_like(order)
  np.put_along_axis(ranks, order, np.arange(num_classes)[None, :].repeat(num_videos, 0), axis=1)
  return ranks < counts[:, None]


def draw_features(rng: np.random.Generator, labels: np.ndarray, directions: np.ndarray,
                  offset: np.ndarray, hard: np.ndarray, config: SynthConfig) -> np.ndarray:
  """Features = offset + Σ signed class signals + noise, vectorized over all videos."""
  signs = labels.astype(np.float32)
  if hard.size:
    minor_mode = rng.random((labels.shape[0], hard.size)) >= config.major_mode_share
    signs[:, hard] *= np.where(minor_mode, -1.0, 1.0)
  scale = config.signal * config.noise * np.sqrt(_FEATURE_SIZE)
  features = offset[None, :] + scale * (signs @ directions)
  features += rng.normal(0.0, config.noise, features.shape).astype(np.float32)
  return features.astype(np.float32)


def _video_records(ids, labels, features):
  rgb_size = _FEATURE_SIZES["mean_rgb"]
  for video_id, row, vector in zip(ids, labels, features):
    yield writer.video_example(
        video_id, np.flatnonzero(row), {"mean_rgb": vector[:rgb_size], "mean_audio": vector[rgb_size:]})


def _frame_records(rng, ids, labels, features, config: SynthConfig):
  rgb_size = _FEATURE_SIZES["mean_rgb"]
  for video_id, row, vector in zip(ids, labels, features):
    frames = vector[None, :] + rng.normal(0.0, config.noise, (config.num_frames, vector.size))
    quantized = formats.quantize(frames)
    yield writer.frame_example(
        video_id, np.flatnonzero(row), {"rgb": quantized[:, :rgb_size], "audio": quantized[:, rgb_size:]})


def _write_split(rng, name: str, num_videos: int, directions, offset, hard, probabilities,
                 config: SynthConfig) -> dict:
  labels = draw_labels(rng, num_videos, probabilities)
  features = draw_features(rng, labels, directions, offset, hard, config)
  ids = np.array([f"{name[0]}{index:07d}" for index in range(num_videos)])
  split_dir = os.path.join(config.output_dir, name)
  num_shards = min(config.num_shards, num_videos)
  bounds = np.linspace(0, num_videos, num_shards + 1).astype(int)
  for shard in range(num_shards):
    part = slice(bounds[shard], bounds[shard + 1])
    if config.frame_level:
      records = _frame_records(rng, ids[part], labels[part], features[part], config)
    else:
      records = _video_records(ids[part], labels[part], features[part])
    path = os.path.join(split_dir, f"{name}{shard:04d}-of-{num_shards:04d}.tfrecord")
    writer.write_shard(path, records)
  logging.info("wrote %d %s videos to %s", num_videos, name, split_dir)
  return {"num_videos": num_videos, "num_shards": num_shards,
          "labels_per_video": float(labels.sum(1).mean()),
          "positives_per_class": labels.sum(0).astype(int).tolist()}


def generate(config: SynthConfig) -> dict:
  """Writes train/ and validate/ shards and hard_classes.json; returns the summary."""
  rng = np.random.default_rng(config.seed)
  directions = rng.normal(size=(config.num_classes, _FEATURE_SIZE)).astype(np.float32)
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  offset = rng.normal(0.0, 0.05, _FEATURE_SIZE).astype(np.float32)
  probabilities = class_frequencies(config.num_classes, config.zipf_exponent)
  hard = hard_class_ids(config.num_classes, config.num_hard_classes)
  artifacts.ensure_writable_dir(config.output_dir)
  summary = {"num_classes": config.num_classes, "seed": config.seed,
             "frame_level": config.frame_level, "hard_classes": hard.tolist(),
             "major_mode_share": config.major_mode_share}
  for name, count in (("train", config.num_train), ("validate", config.num_validate)):
    summary[name] = _write_split(rng, name, count, directions, offset, hard, probabilities, config)
  artifacts.write_json(os.path.join(config.output_dir, "hard_classes.json"), summary)
  return summary
