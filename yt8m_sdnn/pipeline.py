"""Runs the paper's experiment as resumable stages and writes `comparison.json`.

Each stage writes its artifact into `work_dir/<stage>/` and is skipped when that
artifact already exists (unless `overwrite`), so a run that stopped continues where
it was. The stages are: `logistic` and `baseline` (the paper's LR and CNN rows).
"""

from __future__ import annotations

import dataclasses
import os
import time

import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts, evaluation, training
from yt8m_sdnn.data import reader

COMPARISON_FILE = "comparison.json"
STAGE_RESULT_FILE = "stage_result.json"
METRIC_KEYS = ("gap", "hit_at_one", "perr", "map")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """One comparison run.

  Attributes:
    work_dir: receives one directory per stage and `comparison.json`.
    train_reader: how the training shards are read (training=True).
    eval_reader: how the evaluation shards are read.
    train: optimizer and schedule shared by every model (its train_dir is ignored).
    top_k: k of GAP@k.
    overwrite: rerun stages whose artifacts exist.
    stages: which model rows to produce.
  """
  work_dir: str
  train_reader: reader.ReaderConfig
  eval_reader: reader.ReaderConfig
  train: training.TrainConfig
  top_k: int = 20
  overwrite: bool = False
  stages: tuple[str, ...] = ("logistic", "baseline")


def _stage_dir(config: PipelineConfig, stage: str) -> str:
  return os.path.join(config.work_dir, stage)


def _load_done(config: PipelineConfig, stage: str) -> dict | None:
  path = os.path.join(_stage_dir(config, stage), STAGE_RESULT_FILE)
  if config.overwrite or not tf.io.gfile.exists(path):
    return None
  logging.info("stage %s: done already (%s); --overwrite reruns it", stage, path)
  return artifacts.read_json(path, regenerate_hint="Rerun with --overwrite to regenerate it.")


def train_and_evaluate(config: PipelineConfig, stage: str, model_name: str, **train_kwargs) -> dict:
  """Trains one model row, evaluates it, and records metrics, time and throughput."""
  done = _load_done(config, stage)
  if done is not None:
    return done
  train_config = dataclasses.replace(config.train, train_dir=_stage_dir(config, stage),
                                     model=model_name)
  started = time.perf_counter()
  result = training.train(train_config, config.train_reader, **train_kwargs)
  metrics = evaluation.evaluate(result.model, config.eval_reader, top_k=config.top_k)
  record = {key: metrics[key] for key in METRIC_KEYS}
  record.update(num_videos=metrics["num_videos"], model=model_name,
                train_seconds=result.seconds, train_steps=result.steps,
                examples_per_second=result.examples_per_second,
                stage_seconds=time.perf_counter() - started)
  artifacts.write_json(os.path.join(_stage_dir(config, stage), STAGE_RESULT_FILE), record)
  return record


STAGE_MODELS = {"logistic": "logistic", "baseline": "cnn"}


def run(config: PipelineConfig) -> dict:
  """Runs the configured stages and writes `work_dir/comparison.json`.

  Returns:
    The comparison: one entry per stage with the four metrics, training seconds,
    steps and examples/s.
  """
  artifacts.ensure_writable_dir(config.work_dir)
  comparison = {}
  for stage in config.stages:
    if stage not in STAGE_MODELS:
      raise ValueError(f"Expected stages among {sorted(STAGE_MODELS)}. Received: {stage!r}")
    comparison[stage] = train_and_evaluate(config, stage, STAGE_MODELS[stage])
  artifacts.write_json(os.path.join(config.work_dir, COMPARISON_FILE), comparison)
  return comparison


def format_table(comparison: dict) -> str:
  """The comparison as a text table in the layout of the paper's Table 2."""
  stages = list(comparison)
  labels = {"logistic": "LR", "baseline": "CNN", "baseline_equal_steps": "CNN (=steps)",
            "sdnn": "SCNN"}
  names = {"hit_at_one": "Hit@1", "perr": "PERR", "map": "mAP", "gap": "GAP@20"}
  width = max(12, *(len(labels.get(stage, stage)) + 2 for stage in stages))
  lines = ["".ljust(14) + "".join(labels.get(stage, stage).rjust(width) for stage in stages)]
  for key in ("hit_at_one", "perr", "map", "gap"):
    lines.append(names[key].ljust(14) + "".join(
        f"{100 * comparison[stage][key]:.2f}%".rjust(width) for stage in stages))
  lines.append("T_train (s)".ljust(14) + "".join(
      f"{comparison[stage]['train_seconds']:.1f}".rjust(width) for stage in stages))
  lines.append("examples/s".ljust(14) + "".join(
      f"{comparison[stage]['examples_per_second']:.0f}".rjust(width) for stage in stages))
  return "\n".join(lines)
