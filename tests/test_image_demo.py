"""image/demo.py: the paired CNN / SCNN comparison and its table."""

from __future__ import annotations

import numpy as np

from yt8m_sdnn.image import data, demo, training


def test_comparison_pairs_baseline_and_sdnn_per_seed():
  rng = np.random.default_rng(0)
  labels = np.arange(24) % 2
  x = (rng.integers(0, 100, (24, 5, 5, 1)) + 120 * labels[:, None, None, None]).astype(np.uint8)
  images = data.ImageData(x, labels, x[:6], labels[:6], num_classes=2)
  config = training.ImageTrainConfig(dataset="digits", model="small_cnn", num_epochs=1,
                                     batch_size=12, neglection_epochs=1, top_fraction=0.5)
  comparison = demo.compare_on_seeds(config, images, seeds=[3])
  assert [(run["subclass"], run["seed"]) for run in comparison["runs"]] == [(False, 3), (True, 3)]
  assert comparison["runs"][0]["selected"] is None and len(comparison["runs"][1]["selected"]) == 1
  for name in ("baseline", "subclass"):
    summary = comparison["summary"][name]
    assert summary["std"] == 0.0 and 0.0 <= summary["mean"] <= 1.0
  assert comparison["config"]["cutout"] == 2 and "seed" not in comparison["config"]
  table = demo.markdown_table(comparison).splitlines()
  assert len(table) == 4 and table[2].startswith("| CNN |") and table[3].startswith("| SCNN |")
