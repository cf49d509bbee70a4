"""Runs the paper's experiment as resumable stages and writes `comparison.json`.

Each stage writes its artifact into `work_dir/<stage>/` and is skipped when that
artifact already exists (unless `overwrite`), so a run that stopped continues where
it was. A stage is reused only when it was made with this run's settings
(`stage_settings`): the θ stage's training data, model, score, window, τ, initial
model, seed, selection size and selection rule (`selection`, `max_coverage`, the
training-positives band); the plan's selected classes, features, λ, split method
and training data; each row's model family, loss, merge rule and the plan it trained
on. Every artifact this run would reuse is checked before the first stage runs (one
made from a stage still to be made, when it is reached); a mismatch is refused with
one line naming each differing setting and the ways on.

Model rows: `logistic` (LR, always the logistic regression), `baseline`
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

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts, distribute, evaluation, interrupts, locking, models, training
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.data import class_counts, files, reader
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.experiments import measure
from yt8m_sdnn.experiments import oracle
from yt8m_sdnn.experiments import stage_settings
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.subclass import partition
from yt8m_sdnn import subclass_training as trainer
from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE

COMPARISON_FILE = "comparison.json"
_REGENERATE = ("Delete its stage folder (a row whose model was saved is only scored again if "
               "just its result is deleted), or rerun with --overwrite, to regenerate it.")
_REBUILD_COMPARISON = ("Delete it: the next run rebuilds it from the rows' "
                       "stage_result.json files.")
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
    overwrite: make every stage again, those whose artifacts exist too (without it a
      stage is reused when it was made with these settings, and refused otherwise).
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
    selection: "score" (the highest-scored classes) or "matched_random" (their
      frequency-matched random control, seeded by `train.seed`); `selection.SELECTIONS`.
    max_coverage: the largest share of training videos with a selected class (each
      gets one copy), counted exactly; None: no cap. The count limit of `top_fraction`
      or `top_k_classes` applies too.
    min_train_positives: the fewest training positives of a selectable class.
    max_train_positives: the most training positives of a selectable class.
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
  selection: str = selection.SCORE
  max_coverage: float | None = None
  min_train_positives: int | None = None
  max_train_positives: int | None = None

  @property
  def selection_rule(self) -> selection.SelectionRule:
    return selection.SelectionRule(self.selection, self.max_coverage, self.min_train_positives,
                                   self.max_train_positives)

  def __post_init__(self):
    scores_lib.check_score(self.neglection_score)
    _ = self.selection_rule  # the rule checks its own fields
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
# The rows made from the plan: the subclass rows, the copies-only ablation and the
# equal-steps baseline, whose step budget is the SDNN row's.
PLAN_ROWS = ("sdnn", "split_only", "augment_only", "baseline_equal_steps")


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


def _load_done(config: PipelineConfig, stage: str, artifact: str = STAGE_RESULT_FILE,
               log: bool = True):
  path = os.path.join(_stage_dir(config, stage), artifact)
  if config.overwrite or not tf.io.gfile.exists(path):
    return None
  if log:
    logging.info("stage %s: done already (%s); --overwrite reruns it", stage, path)
  return path


def _plan_row_dirs(work_dir: str) -> list[str]:
  """The folders of the rows made from the plan that exist (`PLAN_ROWS`, `ROW-LOSS` too)."""
  if not os.path.isdir(work_dir):
    return []
  return [os.path.join(work_dir, name) for name in sorted(os.listdir(work_dir))
          if name.partition("-")[0] in PLAN_ROWS
          and os.path.isdir(os.path.join(work_dir, name))]


def _neglection_settings(config: PipelineConfig) -> dict:
  """The settings the θ stage is made with (`stage_settings`).

  The optimizer's are not among them: bench runs share one θ stage between rows that
  each train with their own (`baseline_train`, `bench.ablations_at_setting`).
  """
  data = config.train_reader
  settings = {
      "train_data": files.resolve_files(data.data_pattern), "num_classes": data.num_classes,
      "feature_names": list(data.feature_names), "feature_sizes": list(data.feature_sizes),
      "model": config.model, "model_options": dict(config.train.model_options),
      "neglection_score": config.neglection_score,
      "top_fraction": None if config.top_k_classes else config.top_fraction,
      "top_k_classes": config.top_k_classes, **config.selection_rule.to_json()}
  if config.neglection_score in scores_lib.ORACLE_SCORES:  # read off the trained baseline
    settings["val_data"] = files.resolve_files(config.val_reader.data_pattern)
    if config.selection == selection.MATCHED_RANDOM:  # the control's draws
      settings["seed"] = config.train.seed
  else:
    settings.update(
        batch_size=data.batch_size, seed=config.train.seed, shuffle_seed=data.seed,
        neglection_steps=config.neglection_steps,
        fraction_of_epoch=None if config.neglection_steps else config.fraction_of_epoch,
        tau=config.tau, neglection_from_baseline=config.neglection_from_baseline)
  return stage_settings.as_json(settings)


def _plan_settings(config: PipelineConfig, selected: list[int] | None) -> dict:
  """The settings the plan is made with; `selected` None when θ is still to be measured."""
  data = config.train_reader
  settings = {"train_data": files.resolve_files(data.data_pattern),
              "num_classes": data.num_classes, "feature_names": list(data.feature_names),
              "feature_size": data.feature_size, "feature_sizes": list(data.feature_sizes),
              "method": plan_lib.ALGORITHM1, "num_subclasses": 2,
              "extrapolation": config.extrapolation}
  if selected is not None:
    settings["selected"] = [int(c) for c in selected]
  return settings


def _settings_of_plan(plan: plan_lib.SubclassPlan) -> dict:
  """What a plan records of how it was made; a plan older than a setting lacks it."""
  recorded = {"num_classes": plan.num_classes, "feature_names": list(plan.feature_names),
              "feature_size": plan.feature_size, "method": plan.method,
              "num_subclasses": plan.num_subclasses, "extrapolation": plan.extrapolation,
              "selected": [int(c) for c in plan.selected]}
  if plan.feature_sizes is not None:
    recorded["feature_sizes"] = list(plan.feature_sizes)
  if plan.train_data is not None:
    recorded["train_data"] = list(plan.train_data)
  return recorded


def _plan_record(plan: plan_lib.SubclassPlan) -> dict:
  """How a row names the plan it trained on (`plan.plan_id`, with what shows in a message)."""
  return {"id": plan_lib.plan_id(plan), "num_selected": int(plan.selected.size),
          "extrapolation": plan.extrapolation, "selected": [int(c) for c in plan.selected]}


def _row_settings(config: PipelineConfig, stage: str, train_config: training.TrainConfig,
                  plan: plan_lib.SubclassPlan | None) -> dict:
  """The settings a model row is made with (`stage_settings`); `train_config` is the row's."""
  row = split_stage(stage)[0]
  split = row in SPLIT_ROWS
  return stage_settings.as_json({
      "row": row, "model": train_config.model, "loss": train_config.loss.name,
      "subclass_merge": train_config.subclass_merge if split else None,
      "plan": None if plan is None else _plan_record(plan),
      "num_outputs": plan.layout.num_units if split else config.train_reader.num_classes,
      "split_classes": sorted(int(c) for c in plan.selected) if split else []})


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
                   reader_config: reader.ReaderConfig, expected: dict) -> dict | None:
  """A finished row's result, or None; refuses a row trained with other settings.

  A row trained with another learning rate, seed, loss or training data than this run
  asks for (a work dir reused with other flags), or on another plan, or one that is
  not this row's model at all (a plain model trained into its folder), is an error,
  not a silent reuse.
  """
  if config.overwrite:
    return None
  training.check_finished_settings(
      train_config, reader_config,
      overwrite_hint="rerun with --overwrite, or give another --work_dir")
  _check_row(config, stage, expected)
  done = _load_done(config, stage)
  return None if done is None else artifacts.read_json(done, regenerate_hint=_REGENERATE)


def _check_row(config: PipelineConfig, stage: str, expected: dict,
               model: keras.Model | None = None) -> None:
  """Refuses a row folder holding work (a result, a model, a backup) made otherwise.

  The row's record is its `stage_result.json`'s, else the one written before it
  trained; a row without either (trained before the record existed, or by
  `yt8m-train`) is judged by its `model_config.json` and, when loaded, its `model`
  (`stage_settings.derived_row_settings`).
  """
  folder = _stage_dir(config, stage)
  result_path = os.path.join(folder, STAGE_RESULT_FILE)
  if not any(os.path.exists(os.path.join(folder, name)) for name in (
      STAGE_RESULT_FILE, training.MODEL_FILE, training.TRAIN_RESULT_FILE, "backup")):
    return  # nothing that would be reused
  recorded = None
  if os.path.exists(result_path):
    recorded = artifacts.read_json(result_path, regenerate_hint=_REGENERATE).get(
        "stage_settings")
  if recorded is None:
    recorded = stage_settings.read(folder)
  if recorded is None:
    config_path = os.path.join(folder, training.MODEL_CONFIG_FILE)
    recorded = stage_settings.derived_row_settings(
        training.load_model_config(folder) if os.path.exists(config_path) else None)
  if model is not None:
    recorded = dict(recorded, **stage_settings.derived_row_settings(None, model))
  stage_settings.check(folder, recorded, expected, [folder])


def _train_and_evaluate(config: PipelineConfig, stage: str, model_name: str,
                        train_config: training.TrainConfig | None = None,
                        reader_config: reader.ReaderConfig | None = None,
                        build=None, plan: plan_lib.SubclassPlan | None = None) -> dict:
  """Trains one model row, evaluates it, and records metrics, time and throughput.

  `plan` is the plan the row is made from (`PLAN_ROWS`), recorded with the row.
  """
  train_config = _row_train_config(config, stage, model_name, train_config)
  reader_config = reader_config or config.train_reader
  expected = _row_settings(config, stage, train_config, plan)
  done = _load_done_row(config, stage, train_config, reader_config, expected)
  if done is not None:
    return done
  started = time.perf_counter()
  # A run killed after training (e.g. while scoring the test shards) keeps its model.
  result = None if config.overwrite else training.load_train_result(train_config.train_dir)
  if result is None:
    if distribute.is_chief():  # before training: a killed run's folder says what it was
      stage_settings.record(train_config.train_dir, expected)
    result = training.train(train_config, reader_config,
                            build, val_reader=config.val_reader, top_k=config.top_k)
  else:
    _check_row(config, stage, expected, model=result.model)
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
                stage_seconds=time.perf_counter() - started, stage_settings=expected)
  artifacts.write_json(os.path.join(_stage_dir(config, stage), STAGE_RESULT_FILE), record)
  return record


def _reusable_neglection(config: PipelineConfig, log: bool = True) -> dict | None:
  """The finished θ stage's `neglection.json`, or None; refuses one made otherwise."""
  done = _load_done(config, "neglection", measure.NEGLECTION_FILE, log=log)
  if done is None:
    return None
  payload = artifacts.read_json(done, regenerate_hint=_REGENERATE)
  folder = _stage_dir(config, "neglection")
  # The file's own score and selection size win over the record: `selected` follows them.
  recorded = dict(stage_settings.read(folder) or {},
                  **stage_settings.derived_neglection_settings(payload))
  partition_dir = _stage_dir(config, "partition")
  stage_settings.check(done, recorded, _neglection_settings(config), [folder] + (
      [partition_dir] if os.path.exists(partition_dir) else []) + _plan_row_dirs(
          config.work_dir))
  selection.parse_selected(payload.get("selected"), config.train_reader.num_classes, done)
  return payload


def _neglection(config: PipelineConfig) -> dict:
  """Stage `neglection`: θ of the baseline over the first part of an epoch."""
  payload = _reusable_neglection(config)
  if payload is not None:
    return payload
  train_dir = _stage_dir(config, "neglection")
  baseline_model = None
  if config.neglection_from_baseline or config.neglection_score in scores_lib.ORACLE_SCORES:
    _train_and_evaluate(config, "baseline", config.model)  # done already: read back
    baseline_dir = _stage_dir(config, "baseline")
    baseline_model = os.path.join(baseline_dir, training.MODEL_FILE)
  if distribute.is_chief():
    artifacts.ensure_writable_dir(train_dir)
    stage_settings.record(train_dir, _neglection_settings(config))
  if config.neglection_score in scores_lib.ORACLE_SCORES:
    rule = config.selection_rule
    positives = measure.training_positives(rule, config.train_reader)
    payload = oracle.measure_oracle(
        config.neglection_score, training.load_trained_model(baseline_dir), config.val_reader,
        config.train_reader, train_dir, top_fraction=config.top_fraction,
        top_k_classes=config.top_k_classes)
    payload = measure.apply_selection(payload, rule, config.train_reader, config.train.seed,
                                      positives)
    if distribute.is_chief():
      artifacts.write_json(os.path.join(train_dir, measure.NEGLECTION_FILE), payload)
    return payload
  train_config = _without_merge(
      dataclasses.replace(config.train, train_dir=train_dir, model=config.model))
  return measure.measure_neglection(
      train_config, config.train_reader, config.fraction_of_epoch, tau=config.tau,
      top_fraction=config.top_fraction, top_k_classes=config.top_k_classes,
      num_steps=config.neglection_steps, score=config.neglection_score,
      init_model=baseline_model, selection_rule=config.selection_rule)


def _reusable_plan(config: PipelineConfig, selected: list[int] | None,
                   log: bool = True) -> plan_lib.SubclassPlan | None:
  """The finished plan, or None; refuses one made otherwise (for other classes when
  `selected` is given; None: θ is still to be measured)."""
  done = _load_done(config, "partition", PLAN_FILE, log=log)
  if done is None:
    return None
  plan = plan_lib.load_plan(done)
  stage_settings.check(done, _settings_of_plan(plan), _plan_settings(config, selected),
                       [_stage_dir(config, "partition")] + _plan_row_dirs(config.work_dir))
  return plan


def _partition(config: PipelineConfig, selected: list[int]) -> plan_lib.SubclassPlan:
  """Stage `partition`: Algorithm 1 over the training shards, written as the plan."""
  plan = _reusable_plan(config, selected)
  if plan is not None:
    return plan
  data = config.train_reader
  plan = partition.partition_shards(data, selected, extrapolation=config.extrapolation)
  # The plan carries the features' sizes and its training files (`_reusable_plan`).
  plan = dataclasses.replace(plan, feature_sizes=data.feature_sizes,
                             train_data=files.resolve_files(data.data_pattern))
  plan_lib.save_plan(os.path.join(_stage_dir(config, "partition"), PLAN_FILE), plan)
  return plan


def _subclass_row(config: PipelineConfig, stage: str, plan: plan_lib.SubclassPlan,
                  split: bool, augment: bool) -> dict:
  """An SCNN row (or an ablation) on the online transform."""
  train_config = _row_train_config(config, stage, config.model)
  done = _load_done_row(config, stage, train_config, config.train_reader,
                        _row_settings(config, stage, train_config, plan))
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
  return _train_and_evaluate(config, stage, config.model, build=build, plan=plan)


def _baseline_equal_steps(config: PipelineConfig, stage: str, sdnn_steps: int,
                          plan: plan_lib.SubclassPlan) -> dict:
  """The CNN given as many steps (so examples) as the SCNN on `plan`: repeats the shards."""
  train_config = _stage_train_config(config, stage)
  train_config = dataclasses.replace(
      train_config, steps_per_epoch=math.ceil(sdnn_steps / train_config.num_epochs))
  reader_config = dataclasses.replace(config.train_reader, num_epochs=None)
  return _train_and_evaluate(config, stage, config.model, train_config=train_config,
                             reader_config=reader_config, plan=plan)


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
  if distribute.is_chief():
    _remove_orphaned_temporaries(config.work_dir)
  _check_before_any_stage(config)
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
      comparison[stage] = _baseline_equal_steps(config, stage, sdnn["train_steps"], plan)
  artifacts.write_json(os.path.join(config.work_dir, COMPARISON_FILE),
                       _with_earlier_rows(config.work_dir, comparison, plan))
  return comparison


# The files the pipeline itself writes in a work dir and in its stage folders (training
# cleans up after its own, `training.train`, under the row's lock).
_OWN_FILES = (COMPARISON_FILE, STAGE_RESULT_FILE, TOP_K_FILE, PLAN_FILE,
              stage_settings.STAGE_SETTINGS_FILE)


def _remove_orphaned_temporaries(work_dir: str) -> None:
  """Deletes what the atomic writes of a killed run left of the pipeline's own files.

  Called with the work dir locked: no other `yt8m-sdnn` run writes them.
  """
  folders = [work_dir] + [os.path.join(work_dir, name) for name in sorted(os.listdir(work_dir))
                          if os.path.isdir(os.path.join(work_dir, name))]
  removed = sum(interrupts.remove_orphaned_temporaries(folder, _OWN_FILES) for folder in folders)
  if removed:
    logging.info("%s: removed %d temporary files that a killed run left", work_dir, removed)


def _read_comparison(work_dir: str) -> dict | None:
  """`work_dir/comparison.json`, or None; an unreadable one is an error naming it."""
  path = os.path.join(work_dir, COMPARISON_FILE)
  if not os.path.exists(path):
    return None
  return artifacts.read_json(path, regenerate_hint=_REBUILD_COMPARISON)


def _check_before_any_stage(config: PipelineConfig) -> None:
  """Refuses, before any stage runs, what would fail the run once stages have run.

  An unreadable `comparison.json` (written last), and each artifact the run would
  reuse whose settings are not this run's: θ, the plan, and every row (a row made from
  the plan is checked here when the plan exists; otherwise when it is reached, once
  the plan is made).
  """
  _read_comparison(config.work_dir)
  if config.overwrite:
    return
  rows = list(config.stages)
  uses_plan = [stage for stage in rows if _stage_model(config, split_stage(stage)[0]) is None]
  if any(split_stage(stage)[0] == "baseline_equal_steps" for stage in uses_plan):
    rows.append("sdnn")  # its step budget is the SDNN row's
  if uses_plan and (config.neglection_from_baseline
                    or config.neglection_score in scores_lib.ORACLE_SCORES):
    rows.append("baseline")  # θ reads the trained baseline
  plan = None
  if uses_plan:
    payload = _reusable_neglection(config, log=False)
    plan = _reusable_plan(config, None if payload is None else payload["selected"], log=False)
  for stage in dict.fromkeys(rows):
    row = split_stage(stage)[0]
    if row in PLAN_ROWS and plan is None:
      continue  # the plan is still to be made: checked when the row is reached
    model_name = _stage_model(config, row) or config.model
    _check_row(config, stage, _row_settings(
        config, stage, _row_train_config(config, stage, model_name),
        plan if row in PLAN_ROWS else None))


def _with_earlier_rows(work_dir: str, comparison: dict,
                       plan: plan_lib.SubclassPlan | None = None) -> dict:
  """`comparison` plus the rows an earlier call wrote to `work_dir/comparison.json`.

  Rows run one call at a time (`--stages=baseline`, then `--stages=sdnn`) all stay in
  the file. The file is rebuilt from what the rows used: every earlier row is read
  again from its own `stage_result.json`; one whose folder no longer holds a finished
  result (deleted to train it again) is dropped; one made from another plan than this
  call's `plan` (or, without one, than the other rows') is dropped with a warning; and
  `selected` is the classes of the plan the rows were made from. Rows recorded before
  rows named their plan are kept, and `selected` then comes from the earlier file.
  """
  earlier = _read_comparison(work_dir) or {}
  rows = {}
  for key in earlier:
    path = os.path.join(stage_dir(work_dir, key), STAGE_RESULT_FILE)
    if key not in comparison and split_stage(key)[0] in ROW_STAGES and os.path.exists(path):
      rows[key] = artifacts.read_json(path, regenerate_hint=_REGENERATE)
  rows.update((key, value) for key, value in comparison.items() if key != "selected")

  def plan_of(record: dict) -> dict | None:
    return (record.get("stage_settings") or {}).get("plan")

  reference = _plan_record(plan) if plan is not None else next(
      (plan_of(record) for record in rows.values() if plan_of(record)), None)
  merged = {}
  for key, record in rows.items():
    if reference is not None and plan_of(record) and plan_of(record)["id"] != reference["id"]:
      logging.warning("%s: row %s was made from another plan (%s) than the comparison's (%s); "
                      "left out of %s. Delete %s to make it again from this plan.",
                      work_dir, key, plan_of(record)["id"], reference["id"], COMPARISON_FILE,
                      stage_dir(work_dir, key))
      continue
    merged[key] = record
  selected = reference["selected"] if reference is not None else comparison.get(
      "selected", earlier.get("selected"))
  if selected is not None:
    merged["selected"] = selected
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
