"""Runs the paper's experiment as resumable stages and writes `comparison.json`.

Each stage writes its artifact into `work_dir/<stage>/` and is skipped when that
artifact already exists (unless `overwrite`), so a run that stopped continues where
it was. Model rows: `logistic` (LR, always the logistic regression), `baseline`
(`PipelineConfig.model`, the paper's CNN by default), `sdnn` (the subclass version of
that model: split and augmented neglected classes, subclass cross-entropy),
`baseline_equal_steps` (the baseline given as many training examples as the SDNN row
saw, the fair budget comparison at a fixed epoch count), and the ablations
`split_only` (Algorithm 1's split, no augmentation) and `augment_only` (eq. 12's
copies, no split). The SDNN rows share two stages: `neglection` (θ of the baseline
model over a fraction of an epoch or a number of steps, eqs. 6-10) and `partition`
(Algorithm 1, the plan).

Which classes are split is `PipelineConfig.neglection_score` (`neglection.scores`): a
tracked score (the paper's θ by default) measured over the first steps from scratch,
or, with `neglection_from_baseline`, over steps continuing from the trained `baseline`
row (θ measured late); or an oracle (`low_val_ap`, `ap_gap`) read off the trained
baseline on the validation shards, for comparison only. Both need the baseline row,
which is trained first if it has not been.

With validation shards (`val_reader`) every row is early-stopped on them
(`training.train`): it trains until `train.patience` epochs bring no better
validation GAP, keeps its best epoch's weights, and only then is scored once on the
evaluation (test) shards. Each row records `best_epoch`, `best_steps` and its
`validation_curve`.

A row may name its own loss as `ROW:LOSS` (a name of `loss_registry.LOSS_NAMES`), e.g.
`baseline_equal_steps:asymmetric` (the CNN with ASL on the SCNN's step budget) or
`sdnn:focal` (the subclass loss with focal focusing); other rows use `train.loss`. Such
rows live in `work_dir/ROW-LOSS/` and are keyed `ROW:LOSS` in `comparison.json`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts, distribute, evaluation, locking, models, training
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.data import class_counts, reader
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.experiments import measure
from yt8m_sdnn.experiments import oracle
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.subclass import partition
from yt8m_sdnn import subclass_training as trainer
from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE

COMPARISON_FILE = "comparison.json"
_REGENERATE = ("Delete its stage folder (a row whose model was saved is only scored again if "
               "just its result is deleted), or rerun with --overwrite, to regenerate it.")
STAGE_RESULT_FILE = "stage_result.json"
TOP_K_FILE = "test_top_k.npz"
METRIC_KEYS = ("gap", "hit_at_one", "perr", "map")


ROW_STAGES = ("logistic", "baseline", "sdnn", "baseline_equal_steps", "split_only",
              "augment_only")
DEFAULT_STAGES = ("logistic", "baseline", "sdnn", "baseline_equal_steps")


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
    stages: which model rows to produce, in order: names of `ROW_STAGES`, each
      optionally with its own loss as `ROW:LOSS`.
    fraction_of_epoch: share of an epoch over which θ is measured (paper: 1/3).
    tau: iterations per θ window (default: all of them).
    top_fraction: share of classes split (paper: 10%).
    top_k_classes: number of classes split instead of a share.
    extrapolation: λ of eq. (12).
    model: the model family of the baseline, θ and SDNN rows (`models.MODEL_REGISTRY`).
    val_reader: validation shards for early stopping (None: train `num_epochs`).
    neglection_steps: iterations of the θ stage, instead of `fraction_of_epoch`.
    neglection_score: which score selects the classes (`scores.NEGLECTION_SCORES`).
    neglection_from_baseline: measure a tracked score from the trained baseline row's
      weights instead of from scratch.
    baseline_train: the settings of the rows that train the plain model (`logistic`,
      `baseline`, `baseline_equal_steps` and their `ROW:LOSS` variants), when they
      differ from `train` (e.g. each side's own tuned weight decay); None: `train`.
      The θ stage and the subclass rows always use `train`.
  """
  work_dir: str
  train_reader: reader.ReaderConfig
  eval_reader: reader.ReaderConfig
  train: training.TrainConfig
  top_k: int = 20
  overwrite: bool = False
  stages: tuple[str, ...] = DEFAULT_STAGES
  fraction_of_epoch: float = 1 / 3
  tau: int | None = None
  top_fraction: float = 0.1
  top_k_classes: int | None = None
  extrapolation: float = 0.5
  model: str = "cnn"
  val_reader: reader.ReaderConfig | None = None
  neglection_steps: int | None = None
  neglection_score: str = scores_lib.DEFAULT_SCORE
  neglection_from_baseline: bool = False
  baseline_train: training.TrainConfig | None = None

  def __post_init__(self):
    scores_lib.check_score(self.neglection_score)
    # Every setting is checked here, before any stage trains for hours.
    checks = {"top_k": self.top_k >= 1,
              "fraction_of_epoch": 0 < self.fraction_of_epoch <= 1,
              "tau": self.tau is None or self.tau >= 1,
              "top_fraction": 0 < self.top_fraction <= 1,
              "top_k_classes": self.top_k_classes is None or self.top_k_classes >= 1,
              "extrapolation": 0 <= self.extrapolation <= 1,
              "neglection_steps": self.neglection_steps is None or self.neglection_steps >= 1}
    for name, valid in checks.items():
      if not valid:
        raise ValueError(f"{name} is out of range. Received: {name}={getattr(self, name)!r} "
                         "(top_k, tau, top_k_classes, neglection_steps >= 1; fractions in "
                         "(0, 1]; extrapolation in [0, 1])")
    if self.overwrite:
      # Rerunning a stage also discards the backup of its unfinished training.
      for name in ("train", "baseline_train"):
        if getattr(self, name) is not None and not getattr(self, name).overwrite:
          object.__setattr__(self, name, dataclasses.replace(getattr(self, name), overwrite=True))
    if self.neglection_score in scores_lib.ORACLE_SCORES and self.val_reader is None:
      raise ValueError(f"neglection_score={self.neglection_score!r} is an oracle read on "
                       "validation shards; give val_reader (--val_data)")
    if self.neglection_from_baseline and self.neglection_score in scores_lib.ORACLE_SCORES:
      raise ValueError("neglection_from_baseline applies to tracked scores; the oracles "
                       "always read the trained baseline")
    if self.model not in models.MODEL_REGISTRY:
      raise ValueError(
          f"Expected one of {sorted(models.MODEL_REGISTRY)}. Received: model={self.model!r}")
    for stage in self.stages:
      row, loss = split_stage(stage)
      if row not in ROW_STAGES:
        raise ValueError(f"Expected stages among {list(ROW_STAGES)}, optionally as ROW:LOSS. "
                         f"Received: {stage!r}")
      if loss is not None and loss not in loss_registry.LOSS_NAMES:
        raise ValueError(f"Expected the loss of stage {stage!r} among "
                         f"{list(loss_registry.LOSS_NAMES)}. Received: {loss!r}")


def split_stage(stage: str) -> tuple[str, str | None]:
  """"ROW:LOSS" → (ROW, LOSS); "ROW" → (ROW, None)."""
  row, _, loss = stage.partition(":")
  return row, loss or None


BASELINE_ROWS = ("logistic", "baseline", "baseline_equal_steps")
# The rows that train a subclass model, so the only ones a merge rule applies to.
SPLIT_ROWS = ("sdnn", "split_only")


def _stage_train_config(config: PipelineConfig, stage: str) -> training.TrainConfig:
  """The stage's settings (`baseline_train` for the plain-model rows when given, else
  `train`) with the stage's own loss, if it names one."""
  row, loss = split_stage(stage)
  train = (config.baseline_train if row in BASELINE_ROWS and config.baseline_train is not None
           else config.train)
  if loss is None:
    return train
  return dataclasses.replace(train, loss=dataclasses.replace(train.loss, name=loss))


def stage_dir(work_dir: str, stage: str) -> str:
  """The folder of a stage in a run: `work_dir/ROW` or, for `ROW:LOSS`, `work_dir/ROW-LOSS`."""
  return os.path.join(work_dir, stage.replace(":", "-"))


def _stage_dir(config: PipelineConfig, stage: str) -> str:
  return stage_dir(config.work_dir, stage)


def _load_done(config: PipelineConfig, stage: str, artifact: str = STAGE_RESULT_FILE):
  path = os.path.join(_stage_dir(config, stage), artifact)
  if config.overwrite or not tf.io.gfile.exists(path):
    return None
  logging.info("stage %s: done already (%s); --overwrite reruns it", stage, path)
  return path


def _row_train_config(config: PipelineConfig, stage: str, model_name: str,
                      train_config: training.TrainConfig | None = None) -> training.TrainConfig:
  """How a model row trains: the stage's settings, its folder and its model."""
  train_config = dataclasses.replace(train_config or _stage_train_config(config, stage),
                                     train_dir=_stage_dir(config, stage), model=model_name)
  if model_name != config.model:  # the LR row of a moe run takes no mixtures
    train_config = dataclasses.replace(train_config, model_options={})
  if split_stage(stage)[0] not in SPLIT_ROWS:  # a plain model has no merge rule
    train_config = _without_merge(train_config)
  return train_config


def _without_merge(train_config: training.TrainConfig) -> training.TrainConfig:
  """A plain model's settings: the merge rule at its default, so that rows without
  subclasses are shared by runs that differ only in `subclass_merge`."""
  return dataclasses.replace(train_config, subclass_merge=DEFAULT_MERGE)


def _load_done_row(config: PipelineConfig, stage: str, train_config: training.TrainConfig,
                   reader_config: reader.ReaderConfig) -> dict | None:
  """A finished row's result, or None; refuses a row trained with other settings.

  A row trained with another learning rate, seed, loss or training data than this run
  asks for (a work dir reused with other flags) is an error, not a silent reuse.
  """
  if config.overwrite:
    return None
  training.check_finished_settings(
      train_config, reader_config,
      overwrite_hint="rerun with --overwrite, or give another --work_dir")
  done = _load_done(config, stage)
  return None if done is None else artifacts.read_json(done, regenerate_hint=_REGENERATE)


def _train_and_evaluate(config: PipelineConfig, stage: str, model_name: str,
                        train_config: training.TrainConfig | None = None,
                        reader_config: reader.ReaderConfig | None = None,
                        build=None) -> dict:
  """Trains one model row, evaluates it, and records metrics, time and throughput."""
  train_config = _row_train_config(config, stage, model_name, train_config)
  reader_config = reader_config or config.train_reader
  done = _load_done_row(config, stage, train_config, reader_config)
  if done is not None:
    return done
  started = time.perf_counter()
  # A run killed after training (e.g. while scoring the test shards) keeps its model.
  result = None if config.overwrite else training.load_train_result(train_config.train_dir)
  if result is None:
    result = training.train(train_config, reader_config,
                            build, val_reader=config.val_reader, top_k=config.top_k)
  else:
    logging.info("stage %s: trained already (%s); evaluating it", stage, train_config.train_dir)
  single_worker = distribute.num_workers() == 1
  metrics = evaluation.evaluate(result.model, config.eval_reader, top_k=config.top_k,
                                class_ap=True, keep_top_k=single_worker)
  if single_worker:  # what a paired bootstrap of two rows' GAP needs (`bootstrap`)
    top = metrics["top_k"]
    artifacts.write_npz(os.path.join(_stage_dir(config, stage), TOP_K_FILE), {
        "scores": top["scores"], "hits": top["hits"], "num_labels": top["num_labels"],
        "video_ids": np.asarray([bytes(i) for i in top["video_ids"]], dtype="S")})
  record = {key: metrics[key] for key in METRIC_KEYS}
  record["class_ap"] = metrics["class_ap"]
  record.update(num_videos=metrics["num_videos"], model=model_name,
                train_seconds=result.seconds, train_steps=result.steps,
                train_examples=result.examples,
                examples_per_second=result.examples_per_second,
                best_epoch=result.best_epoch, best_steps=result.best_steps,
                stopped_early=result.stopped_early, validation_curve=result.validation_curve,
                stage_seconds=time.perf_counter() - started)
  artifacts.write_json(os.path.join(_stage_dir(config, stage), STAGE_RESULT_FILE), record)
  return record


def _neglection(config: PipelineConfig) -> dict:
  """Stage `neglection`: θ of the baseline over the first part of an epoch."""
  done = _load_done(config, "neglection", measure.NEGLECTION_FILE)
  if done is not None:
    payload = artifacts.read_json(done, regenerate_hint=_REGENERATE)
    selection.parse_selected(payload.get("selected"), config.train_reader.num_classes, done)
    return payload
  train_dir = _stage_dir(config, "neglection")
  baseline_model = None
  if config.neglection_from_baseline or config.neglection_score in scores_lib.ORACLE_SCORES:
    _train_and_evaluate(config, "baseline", config.model)  # done already: read back
    baseline_dir = _stage_dir(config, "baseline")
    baseline_model = os.path.join(baseline_dir, training.MODEL_FILE)
  if config.neglection_score in scores_lib.ORACLE_SCORES:
    return oracle.measure_oracle(
        config.neglection_score, training.load_trained_model(baseline_dir), config.val_reader,
        config.train_reader, train_dir, top_fraction=config.top_fraction,
        top_k_classes=config.top_k_classes)
  train_config = _without_merge(
      dataclasses.replace(config.train, train_dir=train_dir, model=config.model))
  return measure.measure_neglection(
      train_config, config.train_reader, config.fraction_of_epoch, tau=config.tau,
      top_fraction=config.top_fraction, top_k_classes=config.top_k_classes,
      num_steps=config.neglection_steps, score=config.neglection_score,
      init_model=baseline_model)


def _partition(config: PipelineConfig, selected: list[int]) -> plan_lib.SubclassPlan:
  """Stage `partition`: Algorithm 1 over the training shards, written as the plan."""
  path = os.path.join(_stage_dir(config, "partition"), PLAN_FILE)
  if _load_done(config, "partition", PLAN_FILE) is not None:
    return plan_lib.load_plan(path, expected_num_classes=config.train_reader.num_classes,
                              expected_feature_size=config.train_reader.feature_size)
  plan = partition.partition_shards(config.train_reader, selected,
                                    extrapolation=config.extrapolation)
  plan_lib.save_plan(path, plan)
  return plan


def _subclass_row(config: PipelineConfig, stage: str, plan: plan_lib.SubclassPlan,
                  split: bool, augment: bool) -> dict:
  """An SCNN row (or an ablation) on the online transform."""
  train_config = _row_train_config(config, stage, config.model)
  done = _load_done_row(config, stage, train_config, config.train_reader)
  if done is not None:
    return done
  loss_config = train_config.loss
  counts = (class_counts.count_class_positives(config.train_reader)[0]
            if loss_config.needs_class_counts else None)
  build = trainer.subclass_builder(
      plan, config.model, config.train_reader.feature_size,
      config.train_reader.batch_size, config.train.l2_coefficient, split=split,
      augment_copies=augment, loss_config=loss_config, class_counts=counts,
      model_options=config.train.model_options, merge=train_config.subclass_merge)
  return _train_and_evaluate(config, stage, config.model, build=build)


def _baseline_equal_steps(config: PipelineConfig, stage: str, sdnn_steps: int) -> dict:
  """The CNN given as many steps (so examples) as the SCNN: repeats the shards."""
  train_config = _stage_train_config(config, stage)
  train_config = dataclasses.replace(
      train_config, steps_per_epoch=math.ceil(sdnn_steps / train_config.num_epochs))
  reader_config = dataclasses.replace(config.train_reader, num_epochs=None)
  return _train_and_evaluate(config, stage, config.model,
                             train_config=train_config, reader_config=reader_config)


def _stage_model(config: PipelineConfig, row: str) -> str | None:
  """The model a plain row trains: LR for `logistic`, the configured one for `baseline`."""
  return {"logistic": "logistic", "baseline": config.model}.get(row)
PLAN_FILE = "plan.npz"


def run(config: PipelineConfig) -> dict:
  """Runs the configured stages and writes `work_dir/comparison.json`.

  The file keeps the finished rows of earlier calls on the same `work_dir` beside this
  call's (`_with_earlier_rows`); the returned comparison is this call's rows only.

  Returns:
    The comparison: per model row the four metrics, training seconds, steps, examples
    and examples/s; plus `selected` (the split classes) when SDNN stages ran.
  """
  if not distribute.is_chief():
    return _run(config)
  with locking.exclusive(config.work_dir, "yt8m-sdnn run"):
    return _run(config)


def _run(config: PipelineConfig) -> dict:
  """`run`, once the work dir is locked."""
  artifacts.ensure_writable_dir(config.work_dir)
  comparison: dict = {}
  plan = None
  for stage in config.stages:
    row = split_stage(stage)[0]
    if _stage_model(config, row) is not None:
      comparison[stage] = _train_and_evaluate(config, stage, _stage_model(config, row))
      continue
    if plan is None:
      plan = _partition(config, list(_neglection(config)["selected"]))
      comparison["selected"] = [int(c) for c in plan.selected]
    if row == "sdnn":
      comparison[stage] = _subclass_row(config, stage, plan, split=True, augment=True)
    elif row == "split_only":
      comparison[stage] = _subclass_row(config, stage, plan, split=True, augment=False)
    elif row == "augment_only":
      comparison[stage] = _subclass_row(config, stage, plan, split=False, augment=True)
    elif row == "baseline_equal_steps":
      # The step budget is the plain SCNN's (default loss), whichever loss this row has.
      sdnn = comparison.get("sdnn") or _subclass_row(config, "sdnn", plan, True, True)
      comparison[stage] = _baseline_equal_steps(config, stage, sdnn["train_steps"])
  artifacts.write_json(os.path.join(config.work_dir, COMPARISON_FILE),
                       _with_earlier_rows(config.work_dir, comparison))
  return comparison


def _with_earlier_rows(work_dir: str, comparison: dict) -> dict:
  """`comparison` plus the rows an earlier call wrote to `work_dir/comparison.json`.

  Rows run one call at a time (`--stages=baseline`, then `--stages=sdnn`) all stay in
  the file. A row of this call replaces its earlier entry; an earlier row whose
  folder no longer holds a finished result (deleted to train it again) is dropped, as
  is an earlier `selected` when this call has its own.
  """
  path = os.path.join(work_dir, COMPARISON_FILE)
  if not os.path.exists(path):
    return comparison
  earlier = artifacts.read_json(path)
  merged = {}
  for key, value in earlier.items():
    if key in comparison:
      continue
    if key == "selected" or os.path.exists(
        os.path.join(stage_dir(work_dir, key), STAGE_RESULT_FILE)):
      merged[key] = value
  merged.update(comparison)
  return merged


def format_table(comparison: dict, top_k: int = 20) -> str:
  """The comparison as a text table in the layout of the paper's Table 2 (GAP@`top_k`)."""
  stages = [stage for stage in comparison if split_stage(stage)[0] in ROW_STAGES]
  family = {"cnn": "CNN", "logistic": "LR", "moe": "MoE"}
  model = next((comparison[stage]["model"] for stage in stages
                if split_stage(stage)[0] != "logistic"), "cnn")
  name = family.get(model, model)
  labels = {"logistic": "LR", "baseline": name, "baseline_equal_steps": f"{name} =steps",
            "sdnn": f"S{name}", "split_only": "split only", "augment_only": "augment only"}
  names = {"hit_at_one": "Hit@1", "perr": "PERR", "map": "mAP", "gap": f"GAP@{top_k}"}

  def label(stage: str) -> str:
    row, loss = split_stage(stage)
    return labels[row] + (f" {loss}" if loss else "")

  width = max(12, *(len(label(stage)) + 2 for stage in stages))
  lines = ["".ljust(14) + "".join(label(stage).rjust(width) for stage in stages)]
  for key in ("hit_at_one", "perr", "map", "gap"):
    lines.append(names[key].ljust(14) + "".join(
        f"{100 * comparison[stage][key]:.2f}%".rjust(width) for stage in stages))
  lines.append("T_train (s)".ljust(14) + "".join(
      f"{comparison[stage]['train_seconds']:.1f}".rjust(width) for stage in stages))
  lines.append("examples/s".ljust(14) + "".join(
      f"{comparison[stage]['examples_per_second']:.0f}".rjust(width) for stage in stages))
  if any(comparison[stage].get("best_epoch") for stage in stages):
    lines.append("best epoch".ljust(14) + "".join(
        str(comparison[stage].get("best_epoch") or "-").rjust(width) for stage in stages))
    lines.append("steps to best".ljust(14) + "".join(
        str(comparison[stage].get("best_steps") or "-").rjust(width) for stage in stages))
  return "\n".join(lines)


def trained_rows(work_dir: str, stages):
  """(stage, its folder, its trained model, its model config) for each of `stages` whose
  model was kept (`MODEL_FILE`), in order; rows without one are left out."""
  for stage in stages:
    train_dir = stage_dir(work_dir, stage)
    if os.path.exists(os.path.join(train_dir, training.MODEL_FILE)):
      yield (stage, train_dir, training.load_trained_model(train_dir),
             training.load_model_config(train_dir))


def load_top_k(work_dir: str, stage: str) -> dict:
  """A row's test top-k (`TOP_K_FILE`), as `bootstrap.paired_gap_differences` takes it."""
  return artifacts.read_npz(os.path.join(stage_dir(work_dir, stage), TOP_K_FILE),
                            regenerate_hint=_REGENERATE)
