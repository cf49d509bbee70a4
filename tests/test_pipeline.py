"""The whole-method pipeline: rows, per-row losses, resumption, and its table."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from yt8m_sdnn import artifacts, training
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.data import reader, synthetic


@pytest.fixture(scope="module")
def pipeline_config(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipeline")
  synthetic.generate(synthetic.SynthConfig(output_dir=str(root / "data"), num_classes=12,
                                           num_train=256, num_validate=64, num_shards=2,
                                           num_hard_classes=2))
  return pipeline.PipelineConfig(
      work_dir=str(root / "work"),
      train_reader=reader.ReaderConfig(str(root / "data" / "train"), num_classes=12,
                                       batch_size=64, training=True, seed=0),
      eval_reader=reader.ReaderConfig(str(root / "data" / "validate"), num_classes=12),
      train=training.TrainConfig(train_dir=str(root / "work"), num_epochs=1, seed=0),
      stages=("baseline", "sdnn", "baseline_equal_steps:asymmetric", "sdnn:class_balanced"),
      fraction_of_epoch=1.0, top_k_classes=3)


def test_rows_with_their_own_losses(pipeline_config):
  comparison = pipeline.run(pipeline_config)
  assert set(comparison) == {"baseline", "sdnn", "baseline_equal_steps:asymmetric",
                             "sdnn:class_balanced", "selected"}
  assert len(comparison["selected"]) == 3
  for stage in pipeline_config.stages:
    assert 0.0 <= comparison[stage]["gap"] <= 1.0
  # The equal-steps row trains as many steps as the default-loss SCNN.
  assert (comparison["baseline_equal_steps:asymmetric"]["train_steps"]
          >= comparison["sdnn"]["train_steps"])
  work = pipeline_config.work_dir
  assert training.load_model_config(os.path.join(work, "baseline_equal_steps-asymmetric"))[
      "loss"] == "asymmetric"
  assert training.load_model_config(os.path.join(work, "sdnn-class_balanced"))[
      "loss"] == "class_balanced"
  table = pipeline.format_table(comparison)
  assert "CNN =steps asymmetric" in table and "SCNN class_balanced" in table

  # A second run finds every artifact and trains nothing.
  stamps = {stage: os.path.getmtime(os.path.join(work, stage.replace(":", "-"),
                                                 pipeline.STAGE_RESULT_FILE))
            for stage in pipeline_config.stages}
  again = pipeline.run(pipeline_config)
  assert {stage: again[stage]["gap"] for stage in pipeline_config.stages} == {
      stage: comparison[stage]["gap"] for stage in pipeline_config.stages}
  assert stamps == {stage: os.path.getmtime(os.path.join(work, stage.replace(":", "-"),
                                                         pipeline.STAGE_RESULT_FILE))
                    for stage in pipeline_config.stages}


@pytest.mark.parametrize("stage,message", [
    ("bogus", "Expected stages among"),
    ("sdnn:hinge", "Expected the loss of stage 'sdnn:hinge' among"),
])
def test_bad_stage_names_list_the_valid_ones(pipeline_config, stage, message):
  with pytest.raises(ValueError, match=message):
    pipeline.PipelineConfig(work_dir="/tmp/x", train_reader=pipeline_config.train_reader,
                            eval_reader=pipeline_config.eval_reader, train=pipeline_config.train,
                            stages=(stage,))


def test_loss_registry_lists_the_valid_names():
  with pytest.raises(ValueError, match=r"Expected one of \['cross_entropy', 'focal'"):
    loss_registry.LossConfig("hinge")
  with pytest.raises(ValueError, match="needs the training class counts"):
    loss_registry.make_loss(loss_registry.LossConfig("class_balanced"), num_classes=4)


@pytest.mark.parametrize("artifact", ["sdnn/stage_result.json", "neglection/neglection.json",
                                      "partition/plan.npz"])
def test_unreadable_artifact_is_named_with_how_to_regenerate(pipeline_config, artifact):
  pipeline.run(pipeline_config)  # everything exists (cheap when an earlier test ran it)
  path = os.path.join(pipeline_config.work_dir, artifact)
  with open(path, "rb") as stream:
    original = stream.read()
  try:
    with open(path, "wb") as stream:
      stream.write(original[: len(original) // 2])  # as a crash mid-write would, without atomicity
    config = dataclasses.replace(pipeline_config, stages=("sdnn",))
    with pytest.raises(artifacts.ArtifactError) as raised:
      pipeline.run(config)
    assert path in str(raised.value)
    assert "regenerate" in str(raised.value) or "yt8m-partition" in str(raised.value)
  finally:
    with open(path, "wb") as stream:
      stream.write(original)


def test_a_seed_fixes_every_sdnn_stage(pipeline_config, tmp_path):
  """`yt8m-sdnn --seed --deterministic` twice: the same θ, plan and subclass model.

  The θ wrapper and the subclass model are built before `train`; both must be seeded
  (a rerun once selected other classes). A subprocess, since op determinism is global.
  """
  data = os.path.dirname(pipeline_config.train_reader.data_pattern)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for name in ("first", "second"):
    subprocess.run(
        [sys.executable, "-m", "bin.yt8m_pipeline", f"--train_data={data}/train",
         f"--eval_data={data}/validate", f"--work_dir={tmp_path / name}", "--num_classes=12",
         "--batch_size=64", "--num_epochs=1", "--stages=sdnn", "--fraction_of_epoch=1",
         "--top_k_classes=3", "--seed=5", "--deterministic"],
        cwd=root, env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2"),
        check=True, capture_output=True, timeout=300)
  first, second = (artifacts.read_json(str(tmp_path / name / "neglection" / "neglection.json"))
                   for name in ("first", "second"))
  assert first["theta"] == second["theta"]
  first_plan, second_plan = (np.load(tmp_path / name / "partition" / "plan.npz")
                             for name in ("first", "second"))
  for key in ("selected", "anchors", "thresholds", "subclass_counts"):
    np.testing.assert_array_equal(first_plan[key], second_plan[key])
  first_model, second_model = (keras.saving.load_model(tmp_path / name / "sdnn" / "model.keras")
                               for name in ("first", "second"))
  for a, b in zip(first_model.get_weights(), second_model.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_every_row_runs_early_stopped_on_moe(pipeline_config, tmp_path):
  """`--model=moe`: baseline, θ, plan and every subclass row use the mixture of experts."""
  validate = pipeline_config.eval_reader.data_pattern
  config = dataclasses.replace(
      pipeline_config, work_dir=str(tmp_path / "moe"), model="moe",
      val_reader=dataclasses.replace(pipeline_config.eval_reader,
                                     data_pattern=f"{validate}/validate0000-of-0002.tfrecord"),
      eval_reader=dataclasses.replace(pipeline_config.eval_reader,
                                      data_pattern=f"{validate}/validate0001-of-0002.tfrecord"),
      # Two epochs are enough to score each on the validation shard and keep the best;
      # every epoch costs each of the six rows a dataset build and a validation pass.
      train=dataclasses.replace(pipeline_config.train, num_epochs=2, patience=1,
                                learning_rate=0.01, model_options={"num_mixtures": 2}),
      stages=("logistic", "baseline", "sdnn", "split_only", "augment_only", "baseline:asymmetric"),
      neglection_steps=5, fraction_of_epoch=1.0)
  comparison = pipeline.run(config)
  assert comparison["logistic"]["model"] == "logistic"
  for stage in ("baseline", "sdnn", "split_only", "augment_only", "baseline:asymmetric"):
    row = comparison[stage]
    assert row["model"] == "moe" and 1 <= row["best_epoch"] <= 2
    curve = row["validation_curve"]
    assert [point["epoch"] for point in curve] == list(range(1, len(curve) + 1))
    assert row["best_steps"] == curve[row["best_epoch"] - 1]["steps"]
    assert row["num_videos"] == 32  # the test shard only
    top = pipeline.load_top_k(config.work_dir, stage)
    assert top["scores"].shape == (32, 12) and top["num_labels"].shape == (32,)
  neglection = artifacts.read_json(os.path.join(config.work_dir, "neglection", "neglection.json"))
  assert neglection["model"] == "moe" and neglection["iterations_run"] == 5
  saved = training.load_trained_model(os.path.join(config.work_dir, "sdnn"))
  assert saved.get_layer("predictions").__class__.__name__ == "MixtureOfExperts"
  # The rows a report reads back: those with a kept model, in the order asked.
  rows = list(pipeline.trained_rows(config.work_dir, ["sdnn", "baseline_equal_steps",
                                                       "baseline:asymmetric"]))
  assert [(stage, os.path.basename(folder)) for stage, folder, _, _ in rows] == [
      ("sdnn", "sdnn"), ("baseline:asymmetric", "baseline-asymmetric")]
  for _, _, model, model_config in rows:
    assert model_config["num_classes"] == 12 and model.output_shape == (None, 12)
  assert "best epoch" in pipeline.format_table(comparison)
  assert "GAP@5" in pipeline.format_table(comparison, top_k=5)
  assert "SMoE" in pipeline.format_table(comparison)


def test_a_row_killed_after_training_is_evaluated_not_retrained(pipeline_config, tmp_path):
  config = dataclasses.replace(pipeline_config, work_dir=str(tmp_path / "run"),
                               stages=("baseline",))
  first = pipeline.run(config)["baseline"]
  row_dir = tmp_path / "run" / "baseline"
  # As if killed while scoring the test shards: the model is saved, the result is not.
  os.remove(row_dir / pipeline.STAGE_RESULT_FILE)
  trained_at = os.path.getmtime(row_dir / training.MODEL_FILE)
  again = pipeline.run(config)["baseline"]
  assert os.path.getmtime(row_dir / training.MODEL_FILE) == trained_at
  assert again["gap"] == first["gap"] and again["train_steps"] == first["train_steps"]


def test_comparison_file_keeps_the_rows_of_earlier_calls(pipeline_config, tmp_path):
  """Rows trained one call at a time all end up in comparison.json."""
  config = dataclasses.replace(pipeline_config, work_dir=str(tmp_path / "run"),
                               stages=("baseline",))
  baseline = pipeline.run(config)["baseline"]
  returned = pipeline.run(dataclasses.replace(config, stages=("logistic",)))
  assert list(returned) == ["logistic"]
  path = tmp_path / "run" / pipeline.COMPARISON_FILE
  written = artifacts.read_json(str(path))
  assert sorted(written) == ["baseline", "logistic"]
  assert written["baseline"]["gap"] == baseline["gap"]
  # A row deleted to be trained again is no longer reported.
  os.remove(tmp_path / "run" / "baseline" / pipeline.STAGE_RESULT_FILE)
  os.remove(tmp_path / "run" / "baseline" / training.MODEL_FILE)
  pipeline.run(dataclasses.replace(config, stages=("logistic",)))
  assert sorted(artifacts.read_json(str(path))) == ["logistic"]


def test_baseline_rows_may_train_with_their_own_settings(pipeline_config, tmp_path):
  """`baseline_train`: the plain-model rows take it, θ and the subclass rows `train`."""
  config = dataclasses.replace(
      pipeline_config, work_dir=str(tmp_path / "run"), stages=("baseline", "sdnn"),
      train=dataclasses.replace(pipeline_config.train, learning_rate=0.01),
      baseline_train=dataclasses.replace(pipeline_config.train, learning_rate=0.02,
                                         optimizer="adamw", weight_decay=0.1))
  first = pipeline.run(config)

  def settings(stage):
    return artifacts.read_json(str(tmp_path / "run" / stage / training.TRAIN_RESULT_FILE))[
        "settings"]
  assert (settings("baseline")["learning_rate"], settings("baseline")["weight_decay"]) == (0.02, 0.1)
  assert settings("baseline")["optimizer"] == "adamw"
  assert settings("sdnn")["learning_rate"] == settings("neglection")["learning_rate"] == 0.01
  # Read back under the same two settings; the baseline's is checked against its own.
  assert pipeline.run(config)["baseline"]["gap"] == first["baseline"]["gap"]
  with pytest.raises(artifacts.ArtifactError, match="--weight_decay"):
    pipeline.run(dataclasses.replace(config, baseline_train=config.train))


def test_split_rows_train_and_score_with_the_merge_rule(pipeline_config, tmp_path):
  """`subclass_merge`: the split rows save, early-stop and score with it; rows without
  subclasses are shared with a run that uses the other rule; a split row trained with
  one rule is not reported as the other's."""
  validate = pipeline_config.eval_reader.data_pattern
  config = dataclasses.replace(
      pipeline_config, work_dir=str(tmp_path / "run"), stages=("baseline", "sdnn", "augment_only"),
      val_reader=dataclasses.replace(pipeline_config.eval_reader,
                                     data_pattern=f"{validate}/validate0000-of-0002.tfrecord"),
      eval_reader=dataclasses.replace(pipeline_config.eval_reader,
                                      data_pattern=f"{validate}/validate0001-of-0002.tfrecord"),
      train=dataclasses.replace(pipeline_config.train, num_epochs=1, subclass_merge="odds_sum"))
  first = pipeline.run(config)

  def recorded(stage):
    return artifacts.read_json(str(tmp_path / "run" / stage / training.TRAIN_RESULT_FILE))[
        "settings"]["subclass_merge"]
  assert recorded("sdnn") == "odds_sum"
  assert recorded("baseline") == recorded("augment_only") == recorded("neglection") == "max"
  saved = training.load_trained_model(str(tmp_path / "run" / "sdnn"))
  assert saved.get_layer("class_probabilities").merge == "odds_sum"
  # The validation and test scores are the odds_sum model's, not the max's.
  eval_config = dataclasses.replace(config.eval_reader, training=False)
  from yt8m_sdnn import evaluation  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn.subclass.merge import with_merge  # pylint: disable=import-outside-toplevel
  odds_sum = evaluation.evaluate(saved, eval_config)["gap"]
  as_max = evaluation.evaluate(with_merge(saved, "max"), eval_config)["gap"]
  assert first["sdnn"]["gap"] == pytest.approx(odds_sum) and odds_sum != as_max
  assert first["sdnn"]["validation_curve"][0]["val_gap"] == pytest.approx(
      evaluation.evaluate(saved, config.val_reader)["gap"])
  # Another rule: the plain rows are read back, the split row refused.
  with_max = dataclasses.replace(config, stages=("baseline", "augment_only"),
                                 train=dataclasses.replace(config.train, subclass_merge="max"))
  again = pipeline.run(with_max)
  assert again["baseline"]["gap"] == first["baseline"]["gap"]
  assert again["augment_only"]["gap"] == first["augment_only"]["gap"]
  with pytest.raises(artifacts.ArtifactError, match="--subclass_merge: then \"odds_sum\""):
    pipeline.run(dataclasses.replace(with_max, stages=("sdnn",)))
