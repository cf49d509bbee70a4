"""The neglection stage of the pipeline: train the baseline briefly and score θ.

The paper trains its CNN for 1/3 of an epoch on YT8M and selects the 10% of classes
with the largest θ (section 3.3). This runs exactly that with the library's reader and
training job, and writes `TRAIN_DIR/neglection.json` atomically. A
`selection.SelectionRule` (a coverage cap, a frequency band, the frequency-matched
control) is applied to the scores before the file is written (`apply_selection`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os

import keras
import numpy as np
from absl import logging

from yt8m_sdnn import artifacts, interrupts, models, training
from yt8m_sdnn.data import class_counts, files, reader
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.neglection.monitor import DEFAULT_TOP_FRACTION, attach_neglection_monitor

NEGLECTION_FILE = "neglection.json"


def measure_neglection(train_config: training.TrainConfig, reader_config: reader.ReaderConfig,
                       fraction_of_epoch: float, tau: int | None = None,
                       top_fraction: float | None = DEFAULT_TOP_FRACTION,
                       top_k_classes: int | None = None, num_records: int | None = None,
                       num_steps: int | None = None, score: str = scores_lib.DEFAULT_SCORE,
                       init_model: str | None = None,
                       selection_rule: selection.SelectionRule | None = None) -> dict:
  """Trains `train_config.model` for a fraction of an epoch and writes neglection.json.

  From scratch by default, as the paper does; with `init_model` the run starts from a
  trained model's weights (e.g. the early-stopped baseline), so θ is measured late, on
  windows after the baseline has converged, instead of over the first steps.

  Args:
    train_config: the baseline's training settings; `train_dir` receives the JSON,
      TensorBoard logs (θ histograms) and the briefly trained model.
    reader_config: the training shards.
    fraction_of_epoch: share of an epoch to train (the paper: 1/3); may exceed 1.
    tau: τ, iterations per θ window; default all the iterations run (one window).
    top_fraction: share of classes to select (the paper: 10%).
    top_k_classes: number of classes to select instead of a share.
    num_records: training videos, when known; counted from the shards otherwise.
    num_steps: iterations to train, instead of `fraction_of_epoch` (the shards repeat
      as needed). On a small training set a fraction of an epoch is a handful of
      minibatches; the paper's 1/3 of YT8M's epoch is ~2,500 of them.
    score: the tracked score that selects the classes (`scores.TRACKED_SCORES`).
    init_model: a saved `.keras` model of the same family and shape to start from.
    selection_rule: how the classes are chosen from the scores (`apply_selection`;
      seeded by `train_config.seed`); None: the paper's top classes.

  Returns:
    The JSON written: `theta`, `score`, `score_values`, `selected`, `tau`,
    `num_iterations`, `history`, `init_model`, the rule's fields, ...

  Raises:
    ValueError: a fraction or `num_steps` ≤ 0, τ larger than the iterations run, an
      unknown or oracle `score`, an `init_model` whose shape does not match, or a
      `selection_rule` that admits no class (before training) or selects none.
    artifacts.ArtifactError: `train_dir` cannot be written.
  """
  if not fraction_of_epoch > 0:
    raise ValueError(f"fraction_of_epoch must be > 0. Received: {fraction_of_epoch}")
  if num_steps is not None and num_steps <= 0:
    raise ValueError(f"neglection_steps must be > 0. Received: {num_steps}")
  scores_lib.check_score(score, scores_lib.TRACKED_SCORES)
  if init_model is not None and not os.path.exists(init_model):
    raise ValueError(f"init_model {init_model!r} does not exist")
  artifacts.ensure_writable_dir(train_config.train_dir)
  num_records = num_records or files.count_records(reader_config.data_pattern)
  steps_per_epoch = math.ceil(num_records / reader_config.batch_size)
  if num_steps is None:
    steps = max(1, math.ceil(fraction_of_epoch * num_records / reader_config.batch_size))
    run_length = (f"{fraction_of_epoch} of an epoch of {num_records} videos at batch size "
                  f"{reader_config.batch_size}")
  else:
    steps = num_steps
    fraction_of_epoch = steps / steps_per_epoch
    run_length = "--neglection_steps"
  tau = steps if tau is None else tau
  if tau > steps:
    raise ValueError(
        f"tau={tau} is larger than the {steps} iterations run ({run_length}); lower "
        "--tau or raise --fraction_of_epoch or --neglection_steps")
  selection_rule = selection_rule or selection.SelectionRule()
  positives = training_positives(selection_rule, reader_config)  # refused before training
  built = {}

  def build() -> training.Trainable:  # called by `train` once the run is seeded
    model = models.build_model(train_config.model, reader_config.feature_size,
                               reader_config.num_classes,
                               weight_decay=train_config.l2_coefficient,
                               **train_config.model_options)
    if init_model is not None:
      _load_weights(model, init_model)
    wrapper, built["monitor"] = attach_neglection_monitor(
        model, tau, top_fraction=None if top_k_classes else top_fraction,
        top_k_classes=top_k_classes, score=score,
        log_dir=os.path.join(train_config.train_dir, "logs", "neglection"))
    # τ and the initial model shape θ beyond the training settings: a backup of a run
    # with others is refused, as for any training setting.
    return training.Trainable(wrapper, callbacks=[built["monitor"]],
                              settings={"tau": tau, "init_model": _file_identity(init_model)})

  # A killed run's half-written neglection.json (its other files: `training.train`).
  interrupts.remove_orphaned_temporaries(train_config.train_dir, (NEGLECTION_FILE,))
  # Repeat the shards when more than one epoch's worth of steps is asked for.
  reader_config = dataclasses.replace(
      reader_config, training=True, num_epochs=None if steps > steps_per_epoch else 1)
  run_config = dataclasses.replace(train_config, num_epochs=1, steps_per_epoch=steps)
  training.train(run_config, reader_config, build)
  monitor = built["monitor"]
  payload = monitor.to_dict()
  payload.update(iterations_run=steps, fraction_of_epoch=fraction_of_epoch,
                 num_records=num_records, batch_size=reader_config.batch_size,
                 num_classes=reader_config.num_classes, model=train_config.model,
                 init_model=init_model)
  payload = apply_selection(payload, selection_rule, reader_config, train_config.seed, positives)
  path = os.path.join(train_config.train_dir, NEGLECTION_FILE)
  artifacts.write_json(path, payload)
  logging.info("wrote %s: %d classes selected", path, len(payload["selected"]))
  return payload


def training_positives(rule: selection.SelectionRule,
                       reader_config: reader.ReaderConfig) -> tuple[np.ndarray, int] | None:
  """The training positives per class and videos a rule needs, or None for the default rule.

  Called before the scores are measured, so a rule that admits no class is refused
  before hours of training rather than after.

  Raises:
    ValueError: no class has its training positives in the rule's band and cap.
    reader.DataError: a record cannot be used.
  """
  if not rule.needs_class_counts:
    return None
  positives, num_videos = class_counts.count_class_positives(reader_config)
  if not selection.eligible_classes(positives, num_videos, rule).any():
    raise ValueError(f"no class is eligible under {_describe(rule, num_videos)}: training "
                     f"positives range over [{positives.min()}, {positives.max()}] in "
                     f"{num_videos} videos; widen the band or raise --max_coverage")
  return positives, num_videos


def apply_selection(payload: dict, rule: selection.SelectionRule,
                    reader_config: reader.ReaderConfig, seed: int,
                    positives: tuple[np.ndarray, int] | None = None) -> dict:
  """`payload` (a neglection.json) with `selected` chosen from its scores under `rule`.

  The default rule keeps the payload's `selected` (the top classes by score) and
  records the rule. Otherwise the classes are chosen by
  `selection.select` from `score_values`, at most as many as the payload's
  `top_k_classes` or `top_fraction`, with the coverage counted exactly over the
  training shards (`class_counts.videos_covered_by_prefix`, one pass, and one more for
  the control's coverage); the payload then also records `coverage` (the share of
  training videos with at least one selected class: those that get a copy),
  `num_train_videos`, `num_eligible`, and for the control `score_selected`,
  `score_coverage` and `selection_seed`.

  Args:
    payload: what `measure_neglection` or `oracle.measure_oracle` wrote.
    rule: the cap, band and selection.
    reader_config: the training shards.
    seed: seeds the control's draws.
    positives: `training_positives(rule, reader_config)`, when already counted.

  Returns:
    A new payload (not written).

  Raises:
    ValueError: the rule selects no class.
  """
  if not rule.needs_class_counts:
    return dict(payload, **rule.to_json())
  counts, num_videos = positives or training_positives(rule, reader_config)
  values = np.array([np.nan if v is None else v for v in payload["score_values"]], np.float64)
  top_k, top_fraction = payload.get("top_k_classes"), payload.get("top_fraction")
  max_classes = top_k
  if top_k is None and top_fraction:
    max_classes = selection.num_selected_classes(values.size, top_fraction)
  counted = {}  # the ranking the cap was counted over, and its prefix counts

  def covered(ranked: np.ndarray) -> np.ndarray:
    counted.update(ranked=ranked,
                   covered=class_counts.videos_covered_by_prefix(reader_config, ranked)[0])
    return counted["covered"]

  chosen, score_selected = selection.select(values, counts, num_videos, rule, max_classes,
                                            seed=seed, covered=covered)
  eligible = selection.eligible_classes(counts, num_videos, rule)
  if not chosen.size:  # an eligible class alone always fits: none of them has a score
    raise ValueError(
        f"no class is selected under {_describe(rule, num_videos)}: none of the "
        f"{eligible.sum()} eligible classes has a score (a class never seen positive in the "
        "θ window has none); measure longer or widen the band")

  def share(ids: np.ndarray) -> float:
    ranked = counted.get("ranked")
    if ranked is not None and np.array_equal(ids, ranked[:ids.size]):  # counted already
      return int(counted["covered"][ids.size]) / num_videos
    return int(class_counts.videos_covered_by_prefix(reader_config, ids)[0][-1]) / num_videos

  result = dict(payload, **rule.to_json(), selected=chosen.tolist(), coverage=share(chosen),
                num_train_videos=num_videos, num_eligible=int(eligible.sum()))
  if rule.selection == selection.MATCHED_RANDOM:
    result.update(score_selected=score_selected.tolist(), score_coverage=share(score_selected),
                  selection_seed=seed)
  logging.info("selected %d classes (%s) covering %.2f%% of the %d training videos under %s",
               chosen.size, rule.selection, 100 * result["coverage"], num_videos,
               _describe(rule, num_videos))
  return result


def _describe(rule: selection.SelectionRule, num_videos: int) -> str:
  """The rule in a log or error line: "max_coverage=0.02 (78 of 3905 videos), ..."."""
  parts = []
  if rule.max_coverage is not None:
    parts.append(f"max_coverage={rule.max_coverage} "
                 f"({selection.coverage_budget(num_videos, rule.max_coverage)} of {num_videos} "
                 "videos)")
  for name in ("min_train_positives", "max_train_positives"):
    if getattr(rule, name) is not None:
      parts.append(f"{name}={getattr(rule, name)}")
  return ", ".join(parts) or "no cap or band"


def _file_identity(path: str | None) -> dict | None:
  """A file as the fingerprint records it: its absolute path and its content's SHA-256.

  The digest tells a model retrained in place from the one a backup started from (a
  second or so for the paper's 0.57 GB CNN).
  """
  if path is None:
    return None
  if os.path.isdir(path):
    raise ValueError(f"init_model {path!r} is a directory; give a saved .keras model file")
  digest = hashlib.sha256()
  with open(path, "rb") as stream:
    for block in iter(lambda: stream.read(1 << 20), b""):
      digest.update(block)
  return {"path": os.path.abspath(path), "sha256": digest.hexdigest()}


def _load_weights(model: keras.Model, path: str) -> None:
  """Copies a saved model's weights into `model`, refusing a different architecture."""
  try:
    source = keras.saving.load_model(path, safe_mode=True, compile=False)
  except (ValueError, OSError, KeyError) as error:
    raise artifacts.ArtifactError(f"init_model {path}: cannot load the model ({error})") from None
  shapes = [tuple(w.shape) for w in model.weights]
  source_shapes = [tuple(w.shape) for w in source.weights]
  if shapes != source_shapes:
    raise ValueError(
        f"init_model {path}: its weights {source_shapes[:4]}... do not match the "
        f"{model.name!r} being measured ({shapes[:4]}...); give a model of the same "
        "--model, features and classes")
  model.set_weights(source.get_weights())
