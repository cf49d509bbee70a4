"""What made each stage of a `yt8m-sdnn` work dir, and the check before a stage is reused.

The pipeline reuses a finished stage instead of running it again, so a stage's
artifact stands for the settings of the run that reuses it. Each one carries the
settings that made it, and `check` compares them with the run's before the reuse:
- θ (`neglection/`): `STAGE_SETTINGS_FILE`, written before the stage runs (training
  data, model, seed, window, τ, the initial model, the validation data of an oracle).
  The score, the selection's size and its rule (`selection.SelectionRule`: the
  coverage cap, the training-positives band, score or matched control; absent in an
  older file: no cap) are read from `neglection.json` itself, whose `selected`
  follows them (a file rescored in place, `neglection.monitor.rescored`, says its new
  score there).
- the plan (`partition/plan.npz`): its own metadata (`subclass.plan`): the selected
  classes, features, λ, method and training files.
- each model row: `STAGE_SETTINGS_FILE`, written before it trains (its row, model
  family, loss, merge rule, output units and the identity of the plan it trains on,
  `plan.plan_id`), and copied into its `stage_result.json`, so `comparison.json` says
  what every row used.

A mismatch is one error naming each differing setting (its flag, then and now) and
the ways on: delete the stage's folder (and those made from it), or rerun with
`--overwrite`, which makes every stage again.

Artifacts written before this record existed (the committed `bench/runs/**` among
them) stay readable: a setting an artifact does not record is unknown and accepted.
Where an older artifact states it elsewhere, it is derived instead: θ's model, class
count and batch size from `neglection.json`; a row's model, loss and output units
from its `model_config.json`, and the classes a trained subclass model splits from
the model itself (`derived_row_settings`). Those are what a model trained outside
the pipeline (a plain `yt8m-train` into `WORK/sdnn`) is checked by.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Mapping

import keras

from yt8m_sdnn import artifacts
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection import selection

STAGE_SETTINGS_FILE = "stage_settings.json"

# Setting keys and what sets them, for the refusal message.
SETTING_NAMES = {
    "train_data": "--train_data", "val_data": "--val_data", "num_classes": "--num_classes",
    "feature_names": "--feature_names", "feature_sizes": "--feature_sizes",
    "feature_size": "--feature_names/--feature_sizes", "batch_size": "--batch_size",
    "model": "--model", "model_options": "--moe_num_mixtures", "seed": "--seed",
    "shuffle_seed": "--seed (the shuffle's)", "neglection_score": "--neglection_score",
    "neglection_steps": "--neglection_steps", "fraction_of_epoch": "--fraction_of_epoch",
    "tau": "--tau", "neglection_from_baseline": "--neglection_from_baseline (the initial model)",
    "top_fraction": "--top_fraction", "top_k_classes": "--top_k_classes",
    "selected": "the θ stage's selected classes", "extrapolation": "--extrapolation",
    "method": "the split method", "num_subclasses": "the subclasses per class",
    "row": "the row", "loss": "--loss (or ROW:LOSS)", "subclass_merge": "--subclass_merge",
    "plan": "the plan it trained on", "num_outputs": "the model's output units",
    "split_classes": "the classes its model splits", "selection": "--selection",
    "max_coverage": "--max_coverage", "min_train_positives": "--min_train_positives",
    "max_train_positives": "--max_train_positives",
}


class StaleStageError(artifacts.ArtifactError):
  """A stage's artifact was made with other settings than the run that would reuse it."""


def read(stage_dir: str) -> dict[str, Any] | None:
  """The settings recorded in `stage_dir`, or None when it records none."""
  path = os.path.join(stage_dir, STAGE_SETTINGS_FILE)
  if not os.path.exists(path):
    return None
  return artifacts.read_json(path, regenerate_hint=f"Delete {stage_dir} to make the stage again.")


def record(stage_dir: str, settings: Mapping[str, Any]) -> None:
  """Writes the settings a stage is about to be made with (atomically)."""
  artifacts.write_json(os.path.join(stage_dir, STAGE_SETTINGS_FILE), settings)


def as_json(settings: Mapping[str, Any]) -> dict[str, Any]:
  """`settings` as they come back from disk (tuples as lists, NaN as null)."""
  return json.loads(json.dumps(artifacts.json_value(settings)))


def differences(recorded: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
  """Each setting both record and that differs: "--top_k_classes: then 5, now 10; ..."

  A key `recorded` lacks is unknown and accepted (an artifact older than the record).
  """
  def shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."

  expected = as_json(expected)
  differing = [key for key in expected if key in recorded and recorded[key] != expected[key]]
  return "; ".join(f"{SETTING_NAMES.get(key, key)}: then {shown(recorded[key])}, "
                   f"now {shown(expected[key])}" for key in differing)


def check(what: str, recorded: Mapping[str, Any] | None, expected: Mapping[str, Any],
          remove: list[str]) -> None:
  """Refuses to reuse `what` when its `recorded` settings differ from `expected`.

  Args:
    what: the artifact, named in the message (its path).
    recorded: its settings (None: it records none; accepted).
    expected: this run's.
    remove: the folders to delete to make it again: the stage's own, then those made
      from it that exist.

  Raises:
    StaleStageError: one line naming `what`, each differing setting and the ways on.
  """
  if recorded is None:
    return
  lines = differences(recorded, expected)
  if lines:
    raise StaleStageError(
        f"{what}: made with other settings ({lines}); reusing it would report this run "
        f"under those. Rerun with its settings, or make it again: delete "
        f"{', '.join(remove)}, or rerun with --overwrite (which makes every stage again).")


def derived_neglection_settings(payload: Mapping[str, Any]) -> dict[str, Any]:
  """What a `neglection.json` itself says made it, for the keys it holds.

  A score outside `scores.NEGLECTION_SCORES` names a selection made by hand (bench's
  frequency-matched control writes one for the pipeline to reuse): taken as given.
  Otherwise the selection rule is derived too, a field the file lacks as its default
  (`selection.SelectionRule`): a file written before the rule existed selected without
  a cap or band, so a run asking for one is refused rather than handed it.
  """
  derived = {}
  if payload.get("score") in scores_lib.NEGLECTION_SCORES:
    derived["neglection_score"] = payload["score"]
    derived.update({name: payload.get(name, default)
                    for name, default in selection.SelectionRule().to_json().items()})
  for key in ("top_fraction", "top_k_classes", "model", "num_classes", "batch_size"):
    if key in payload:
      derived[key] = payload[key]
  if "init_model" in payload:  # a tracked score's run
    derived["neglection_from_baseline"] = payload["init_model"] is not None
  return derived


def derived_row_settings(model_config: Mapping[str, Any] | None,
                         model: keras.Model | None = None) -> dict[str, Any]:
  """What a trained row's `model_config.json` (and its model, when loaded) say made it.

  For a row without a record: one trained before the record existed, or outside the
  pipeline. `split_classes` are the classes with more than one output unit in the
  saved model's `SubclassMerge` (none for a plain model).
  """
  derived = {key: model_config[key] for key in ("model", "loss", "num_outputs")
             if model_config and key in model_config}
  if model is not None:
    merge = next((layer for layer in model.layers
                  if layer.__class__.__name__ == "SubclassMerge"), None)
    units = collections.Counter([] if merge is None else [int(c) for c in merge.unit_to_class])
    derived["split_classes"] = sorted(c for c, count in units.items() if count > 1)
  return derived
