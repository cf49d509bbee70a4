"""CNN against SCNN over several seeds on one data set: the shape of Table 1, small.

Each seed trains the baseline and the subclass network with the same configuration,
so a seed is a paired comparison; the summary gives each network's mean and sample
standard deviation of the test CCR over the seeds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import keras
import numpy as np
from absl import logging

from yt8m_sdnn.image import data, training


def compare_on_seeds(config: training.ImageTrainConfig, images: data.ImageData,
                     seeds: Sequence[int]) -> dict[str, Any]:
  """Runs `config` as baseline and as SDNN for every seed.

  Returns:
    A JSON-ready dict: `config` (the subclass run's, seed aside), `runs` (one entry per
    network and seed: `subclass`, `seed`, `ccr`, `class_ccr`, `selected`,
    `train_seconds`) and `summary` (per network: `ccr` per seed, `mean`, `std`).

  Example:
    config = training.ImageTrainConfig(dataset="digits", model="small_cnn", num_epochs=30,
                                       decay_epochs=(9, 18, 24), neglection_epochs=5)
    comparison = compare_on_seeds(config, data.load_digits(), seeds=range(5))
  """
  runs = []
  for seed in seeds:
    for subclass in (False, True):
      keras.backend.clear_session()  # Each run starts from a fresh graph and memory.
      result = training.run_experiment(
          dataclasses.replace(config, subclass=subclass, seed=int(seed)), images)
      logging.info("seed %d %s: CCR %.4f", seed, "SDNN" if subclass else "baseline",
                   result["ccr"])
      runs.append({key: result.get(key) for key in (
          "subclass", "ccr", "class_ccr", "selected", "train_seconds")} | {"seed": int(seed)})
  summary = {}
  for name, subclass in (("baseline", False), ("subclass", True)):
    ccr = [run["ccr"] for run in runs if run["subclass"] == subclass]
    summary[name] = {"ccr": ccr, "mean": float(np.mean(ccr)),
                     "std": float(np.std(ccr, ddof=1)) if len(ccr) > 1 else 0.0}
  config_dict = dataclasses.asdict(dataclasses.replace(config.resolved(), subclass=True))
  config_dict.pop("seed")
  return {"config": config_dict, "runs": runs, "summary": summary}


def markdown_table(comparison: dict[str, Any]) -> str:
  """The comparison as a Markdown table: CCR (%) per seed, mean ± std, classes split."""
  lines = ["| network | CCR (%) per seed | mean ± std | classes split (by θ) |",
           "|---|---|---|---|"]
  for name, subclass in (("CNN", False), ("SCNN", True)):
    runs = [run for run in comparison["runs"] if run["subclass"] == subclass]
    summary = comparison["summary"]["subclass" if subclass else "baseline"]
    split = ", ".join(str(run["selected"]) for run in runs) if subclass else "—"
    per_seed = ", ".join(f"{100 * run['ccr']:.2f}" for run in runs)
    lines.append(f"| {name} | {per_seed} | {100 * summary['mean']:.2f} ± "
                 f"{100 * summary['std']:.2f} | {split} |")
  return "\n".join(lines)
