"""Synthetic shards: real YT8M format, deterministic, and the planted structure holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yt8m_sdnn.data import reader, synthetic


def generate(tmp_path, **kwargs):
  kwargs = {"num_classes": 20, "num_train": 300, "num_validate": 60, "num_shards": 2,
            "num_hard_classes": 3, **kwargs}
  return synthetic.generate(synthetic.SynthConfig(output_dir=str(tmp_path), **kwargs))


def read_split(directory, num_classes=20, **kwargs):
  batches = list(reader.build_dataset(reader.ReaderConfig(
      str(directory), num_classes=num_classes, batch_size=128, deterministic=True,
      cycle_length=1, include_ids=True, **kwargs)))
  return [np.concatenate([np.asarray(b[i]) for b in batches]) for i in range(3)]


def test_writes_yt8m_shards_and_hard_class_file(tmp_path):
  summary = generate(tmp_path)
  features, labels, ids = read_split(tmp_path / "train")
  assert features.shape == (300, 1152) and labels.shape == (300, 20)
  assert len(set(ids.tolist())) == 300
  assert sorted(p.name for p in (tmp_path / "validate").iterdir()) == [
      "validate0000-of-0002.tfrecord", "validate0001-of-0002.tfrecord"]
  written = json.loads((tmp_path / "hard_classes.json").read_text())
  assert written["hard_classes"] == summary["hard_classes"] and len(written["hard_classes"]) == 3
  assert 2.0 < labels.sum(1).mean() < 4.0  # about 3 labels a video, like YT8M


def test_same_seed_same_bytes(tmp_path):
  generate(tmp_path / "a", seed=5)
  generate(tmp_path / "b", seed=5)
  generate(tmp_path / "c", seed=6)
  first = (tmp_path / "a" / "train" / "train0000-of-0002.tfrecord").read_bytes()
  assert first == (tmp_path / "b" / "train" / "train0000-of-0002.tfrecord").read_bytes()
  assert first != (tmp_path / "c" / "train" / "train0000-of-0002.tfrecord").read_bytes()


def test_long_tailed_class_frequencies():
  probabilities = synthetic.class_frequencies(100, 0.8)
  # Zipf with exponent 0.8: p(1) / p(100) = 100 ** 0.8 ≈ 39.8
  np.testing.assert_allclose(probabilities[0] / probabilities[-1], 100 ** 0.8)


def test_hard_classes_form_two_opposite_unequal_modes(tmp_path):
  summary = generate(tmp_path, num_train=3000, num_hard_classes=2)
  features, labels, _ = read_split(tmp_path / "train")
  mean = features.mean(0)
  for hard in summary["hard_classes"]:
    members = features[labels[:, hard] == 1] - mean
    # The class's main axis: the top principal direction of its members.
    axis = np.linalg.svd(members, full_matrices=False)[2][0]
    projections = members @ axis
    share = max((projections > 0).mean(), (projections < 0).mean())
    assert 0.55 < share < 0.8, share  # two unequal modes (planted share 0.65)
    # Opposite sides of the global mean: the modes' centres straddle it.
    assert projections[projections > 0].mean() > 0.1 and projections[projections < 0].mean() < -0.1


def test_frame_level_shards(tmp_path):
  generate(tmp_path, frame_level=True, num_train=40, num_validate=10)
  features, labels, _ = read_split(tmp_path / "train", frame_level=True,
                                   feature_names=("rgb", "audio"))
  assert features.shape == (40, 1152) and labels.sum(1).min() >= 1


def test_bad_config_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="num_hard_classes"):
    synthetic.SynthConfig(output_dir=str(tmp_path), num_classes=5, num_hard_classes=6)
