"""A work dir's stages are reused only under the settings that made them (issue 35).

Every reusable artifact of `yt8m-sdnn` carries its settings (`stage_settings`, the
plan's metadata); a rerun with others is refused in one line before any stage runs,
naming each differing setting and the ways on. The runs are in-process `pipeline.run`
calls of the logistic family on 128 videos, a two-step θ window and one epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, binary_env, small_tmpfs
from yt8m_sdnn import artifacts, training
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.experiments import pipeline, stage_settings
from yt8m_sdnn.subclass import plan as plan_lib

BENCH_RUN = ROOT / "bench" / "runs" / "converged_moe_reg" / "tune" / "adamw_0.03_0.005"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("stale_data")
  synthetic.generate(synthetic.SynthConfig(output_dir=str(root), num_classes=12, num_train=128,
                                           num_validate=32, num_shards=4, num_hard_classes=2))
  return root


def make_config(data: pathlib.Path, work_dir, **changes) -> pipeline.PipelineConfig:
  fields = dict(
      work_dir=str(work_dir),
      train_reader=reader.ReaderConfig(str(data / "train"), num_classes=12, batch_size=64,
                                       training=True, seed=0),
      eval_reader=reader.ReaderConfig(str(data / "validate"), num_classes=12),
      train=training.TrainConfig(train_dir=str(work_dir), model="logistic", num_epochs=1,
                                 seed=0),
      model="logistic", stages=("logistic", "sdnn"), neglection_steps=2, top_k_classes=3)
  fields.update(changes)
  return pipeline.PipelineConfig(**fields)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> pathlib.Path:
  """A work dir where θ, the plan and the logistic and sdnn rows all finished."""
  work = tmp_path_factory.mktemp("stale_finished") / "work"
  pipeline.run(make_config(data, work))
  return work


@pytest.fixture
def work(finished, tmp_path) -> pathlib.Path:
  """A copy of the finished work dir, for a test to rerun or damage."""
  copy = tmp_path / "work"
  shutil.copytree(finished, copy)
  return copy


def modification_times(work: pathlib.Path) -> dict[str, int]:
  return {str(path.relative_to(work)): path.stat().st_mtime_ns for path in work.rglob("*")
          if path.is_file() and path.name != ".lock"}


def shards(data: pathlib.Path, count: int) -> str:
  return ",".join(str(path) for path in sorted((data / "train").iterdir())[:count])


@pytest.mark.parametrize("change, artifact, setting", [
    # Each of the cases: another selection size, score, window or shards
    # silently reused the old θ and plan (5 classes selected, λ = 0.5).
    ({"top_k_classes": 4}, "neglection/neglection.json", "--top_k_classes: then 3, now 4"),
    ({"neglection_score": "null_normalized"}, "neglection/neglection.json",
     '--neglection_score: then "paper", now "null_normalized"'),
    ({"neglection_steps": 1}, "neglection/neglection.json", "--neglection_steps: then 2, now 1"),
    ({"tau": 1}, "neglection/neglection.json", "--tau: then null, now 1"),
    ({"train": {"seed": 1}}, "neglection/neglection.json", "--seed: then 0, now 1"),
    ({"train_reader": {"data_pattern": 2}}, "neglection/neglection.json", "--train_data: then"),
    # Issue 34: a coverage cap selects other classes than the uncapped θ stage did.
    ({"max_coverage": 0.5}, "neglection/neglection.json", "--max_coverage: then null, now 0.5"),
    # θ is this run's: the plan made from it with another λ is refused.
    ({"extrapolation": 0.25}, "partition/plan.npz", "--extrapolation: then 0.5, now 0.25"),
])
def test_a_stage_made_with_other_settings_is_refused_before_any_stage_runs(
    data, work, change, artifact, setting):
  config = make_config(data, work)
  for name, value in change.items():
    if name == "train_reader":  # fewer training shards: 2 of the 4 the stages saw
      value = dataclasses.replace(config.train_reader,
                                  data_pattern=shards(data, value["data_pattern"]))
    elif name == "train":
      value = dataclasses.replace(config.train, **value)
    config = dataclasses.replace(config, **{name: value})
  before = modification_times(work)
  with pytest.raises(stage_settings.StaleStageError) as raised:
    pipeline.run(config)
  message = str(raised.value)
  assert message.startswith(f"{work / artifact}: made with other settings (")
  assert setting in message and "\n" not in message
  # The ways on: the folders made from it, and --overwrite.
  assert f"delete {work / artifact.split('/')[0]}" in message and "--overwrite" in message
  if artifact.startswith("neglection"):
    assert f"{work / 'partition'}, {work / 'sdnn'}" in message
  # Refused before any stage ran: the logistic row (first in order) was not even scored.
  assert modification_times(work) == before


def test_the_same_settings_reuse_every_stage_and_overwrite_remakes_them(data, work):
  config = make_config(data, work)
  before = modification_times(work)
  again = pipeline.run(config)
  assert {key: value for key, value in modification_times(work).items()
          if key != pipeline.COMPARISON_FILE} == {
              key: value for key, value in before.items() if key != pipeline.COMPARISON_FILE}
  assert again["sdnn"]["stage_settings"]["plan"]["num_selected"] == 3
  # --overwrite is the way on that the refusals name: every stage is made again.
  remade = pipeline.run(dataclasses.replace(config, top_k_classes=4, overwrite=True))
  assert len(remade["selected"]) == 4
  assert remade["sdnn"]["stage_settings"]["plan"]["num_selected"] == 4
  assert pipeline.run(dataclasses.replace(config, top_k_classes=4))["sdnn"]["gap"] == (
      remade["sdnn"]["gap"])


def test_temporaries_a_killed_run_left_are_removed_by_the_next(data, work):
  """A run killed mid-write leaves hidden temporaries (the plan's, a row's result's)."""
  left = [work / ".comparison.json.k1ll3d00.tmp",
          work / "partition" / ".plan.npz.k1ll3d00.tmp.npz",
          work / "sdnn" / ".stage_result.json.k1ll3d00.tmp"]
  for path in left:
    path.write_bytes(b"half")
  kept = work / "sdnn" / ".notes.k1ll3d00.tmp"  # not a file the pipeline writes
  kept.write_bytes(b"someone else's")
  pipeline.run(make_config(data, work))
  assert [path.exists() for path in left] == [False] * 3 and kept.exists()


def test_rows_made_from_another_plan_are_refused(data, work):
  """The issue's case: neglection/, partition/ and comparison.json deleted, sdnn/ kept,
  a rerun with another selection size listed the new classes beside the old rows."""
  for name in ("neglection", "partition"):
    shutil.rmtree(work / name)
  os.remove(work / pipeline.COMPARISON_FILE)
  with pytest.raises(stage_settings.StaleStageError) as raised:
    pipeline.run(make_config(data, work, top_k_classes=4))
  message = str(raised.value)
  assert message.startswith(f"{work / 'sdnn'}: made with other settings (")
  assert "the plan it trained on: then {" in message
  assert "the model's output units: then 15, now 16" in message
  assert f"delete {work / 'sdnn'}" in message
  assert not (work / pipeline.COMPARISON_FILE).exists()


def test_a_plain_model_trained_into_the_sdnn_folder_is_not_scored_as_the_sdnn_row(data, work):
  """As `yt8m-train --model=logistic --train_dir=WORK/sdnn` leaves it: no stage record."""
  shutil.rmtree(work / "sdnn")
  config = make_config(data, work)
  training.train(dataclasses.replace(config.train, train_dir=str(work / "sdnn")),
                 config.train_reader)
  with pytest.raises(stage_settings.StaleStageError,
                     match=r"sdnn: made with other settings \(the model's output units: then "
                           r"12, now 15\)"):
    pipeline.run(config)


def test_a_trained_model_without_its_record_is_checked_by_the_model_itself(data, work):
  """A row killed after training keeps its model; without a record (an older row, or a
  plain model's config edited to claim the units) the saved model says what it splits."""
  def forget_the_record():
    for name in (pipeline.STAGE_RESULT_FILE, stage_settings.STAGE_SETTINGS_FILE):
      (work / "sdnn" / name).unlink(missing_ok=True)

  forget_the_record()
  config = make_config(data, work)
  # Without a record, its model_config.json and its model agree with this plan: scored.
  scored = pipeline.run(config)
  assert scored["sdnn"]["stage_settings"]["split_classes"] == sorted(scored["selected"])
  # The same model judged against a plan that splits other classes.
  forget_the_record()
  path = str(work / "partition" / pipeline.PLAN_FILE)
  plan = plan_lib.load_plan(path)
  other = [int(c) for c in plan.selected[::-1]][:-1] + [
      next(c for c in range(12) if c not in plan.selected)]
  plan_lib.save_plan(path, dataclasses.replace(plan, selected=np.asarray(other)))
  payload = artifacts.read_json(str(work / "neglection" / "neglection.json"))
  artifacts.write_json(str(work / "neglection" / "neglection.json"), dict(payload, selected=other))
  with pytest.raises(stage_settings.StaleStageError, match="the classes its model splits: then"):
    pipeline.run(config)


def test_comparison_json_is_rebuilt_from_what_its_rows_used(data, work):
  """A row trained on another plan than the file's is left out, and `selected` is the
  classes of the plan its rows used."""
  for name in ("neglection", "partition"):
    shutil.rmtree(work / name)
  returned = pipeline.run(make_config(data, work, top_k_classes=4, stages=("split_only",)))
  written = artifacts.read_json(str(work / pipeline.COMPARISON_FILE))
  # sdnn/ was trained on the 3-class plan: left out; logistic has no plan: kept.
  assert sorted(written) == ["logistic", "selected", "split_only"]
  assert written["selected"] == returned["selected"] and len(written["selected"]) == 4
  plan = plan_lib.load_plan(str(work / "partition" / pipeline.PLAN_FILE))
  assert written["split_only"]["stage_settings"]["plan"]["id"] == plan_lib.plan_id(plan)
  assert written["logistic"] == artifacts.read_json(
      str(work / "logistic" / pipeline.STAGE_RESULT_FILE))


def test_a_corrupt_comparison_file_is_refused_before_any_stage_runs(data, tmp_path):
  work = tmp_path / "work"
  work.mkdir()
  (work / pipeline.COMPARISON_FILE).write_text('{"logistic": {"gap": 0.5')
  with pytest.raises(artifacts.ArtifactError,
                     match=f"{work / pipeline.COMPARISON_FILE}: not valid JSON.*Delete it"):
    pipeline.run(make_config(data, work))
  assert sorted(os.listdir(work)) == [".lock", pipeline.COMPARISON_FILE]


def _strip_records(work: pathlib.Path) -> None:
  """`work` as the version before the records left it."""
  for path in work.rglob(stage_settings.STAGE_SETTINGS_FILE):
    path.unlink()
  for path in work.rglob(pipeline.STAGE_RESULT_FILE):
    record = json.loads(path.read_text())
    record.pop("stage_settings")
    path.write_text(json.dumps(record))
  path = str(work / "partition" / pipeline.PLAN_FILE)
  plan = plan_lib.load_plan(path)
  plan_lib.save_plan(path, dataclasses.replace(plan, feature_sizes=None, train_data=None))


def test_stages_recorded_before_the_records_are_reused(data, work):
  """A missing record is unknown and accepted; what older files state is still checked."""
  _strip_records(work)
  config = make_config(data, work)
  before = modification_times(work)
  again = pipeline.run(config)
  assert modification_times(work)["sdnn/model.keras"] == before["sdnn/model.keras"]
  assert "stage_settings" not in again["sdnn"] and len(again["selected"]) == 3
  # The score and selection size are in every neglection.json: still refused.
  with pytest.raises(stage_settings.StaleStageError, match="--top_k_classes: then 3, now 4"):
    pipeline.run(dataclasses.replace(config, top_k_classes=4))
  # So is a cap: a file without one selected without one.
  with pytest.raises(stage_settings.StaleStageError, match="--max_coverage: then null, now 0.5"):
    pipeline.run(dataclasses.replace(config, max_coverage=0.5))


def test_the_committed_bench_runs_stay_readable(tmp_path):
  """bench/runs/** predate the records: their rows and selection are kept as they are."""
  if not (BENCH_RUN / pipeline.COMPARISON_FILE).exists():
    pytest.skip(f"{BENCH_RUN} is not in this checkout")
  work = tmp_path / "run"
  shutil.copytree(BENCH_RUN, work)
  earlier = artifacts.read_json(str(work / pipeline.COMPARISON_FILE))
  rebuilt = pipeline._with_earlier_rows(str(work), {})  # pylint: disable=protected-access
  assert sorted(rebuilt) == sorted(earlier) and rebuilt["selected"] == earlier["selected"]
  payload = artifacts.read_json(str(work / "neglection" / "neglection.json"))
  assert stage_settings.derived_neglection_settings(payload) == {
      "neglection_score": "paper", "top_fraction": 0.1, "top_k_classes": None, "model": "moe",
      "num_classes": 3862, "batch_size": 512, "neglection_from_baseline": False,
      # Written before the selection rule: no cap, no band, the score's own selection.
      "selection": "score", "max_coverage": None, "min_train_positives": None,
      "max_train_positives": None}
  config = training.load_model_config(str(work / "sdnn"))
  assert stage_settings.derived_row_settings(config) == {
      "model": "moe", "loss": "cross_entropy", "num_outputs": 3862 + 386}


def _plan_for(feature_names, feature_sizes) -> plan_lib.SubclassPlan:
  width = sum(feature_sizes)
  return plan_lib.SubclassPlan(
      num_classes=12, feature_size=width, feature_names=feature_names,
      feature_sizes=feature_sizes, selected=np.array([3, 1]), mean=np.zeros(width),
      anchors=np.zeros((2, 2, width), np.float32), subclass_counts=np.ones((2, 2)),
      thresholds=np.array([0.5, 0.5]), train_data=("/data/train00.tfrecord",))


def test_plans_know_their_features_and_older_plans_still_load(tmp_path):
  path = str(tmp_path / "plan.npz")
  plan = _plan_for(("mean_rgb", "mean_audio"), (1024, 128))
  plan_lib.save_plan(path, plan)
  loaded = plan_lib.load_plan(path, expected_feature_names=("mean_rgb", "mean_audio"),
                              expected_feature_sizes=(1024, 128))
  assert loaded.feature_sizes == (1024, 128) and loaded.train_data == ("/data/train00.tfrecord",)
  assert plan_lib.plan_id(loaded) == plan_lib.plan_id(plan)
  assert plan_lib.plan_id(dataclasses.replace(plan, extrapolation=0.25)) != plan_lib.plan_id(plan)
  with pytest.raises(artifacts.ArtifactError, match=r"plan is for features \(mean_rgb, "
                     r"mean_audio\), the data has \(mean_audio, mean_rgb\) \(--feature_names\)"):
    plan_lib.load_plan(path, expected_feature_size=1152,
                       expected_feature_names=("mean_audio", "mean_rgb"),
                       expected_feature_sizes=(128, 1024))
  # Same names, other widths (the total agrees).
  odd = _plan_for(("mean_rgb", "mean_audio"), (1000, 152))
  plan_lib.save_plan(path, odd)
  with pytest.raises(artifacts.ArtifactError, match=r"sizes \[1000, 152\], the data has sizes "
                     r"\[1024, 128\] \(--feature_sizes\)"):
    plan_lib.load_plan(path, expected_feature_sizes=(1024, 128))
  # A plan written before the sizes were recorded: unknown, accepted.
  arrays = dict(np.load(path, allow_pickle=False))
  metadata = json.loads(str(arrays["metadata"]))
  del metadata["feature_sizes"], metadata["train_data"]
  arrays["metadata"] = np.array(json.dumps(metadata))
  artifacts.write_npz(path, arrays)
  older = plan_lib.load_plan(path, expected_feature_sizes=(1024, 128))
  assert older.feature_sizes is None and older.train_data is None


@pytest.mark.parametrize("value", [5.0, -0.1, float("nan")])
def test_extrapolation_out_of_range_is_refused(value):
  with pytest.raises(ValueError, match=r"extrapolation \(λ of eq. \(12\)\) must be in \[0, 1\]"):
    plan_lib.check_extrapolation(value)


def _run_binary(name: str, *flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", f"bin.{name}", *flags], cwd=ROOT,
                        env=binary_env(), capture_output=True, text=True, timeout=300)


def test_yt8m_partition_refuses_an_out_of_range_extrapolation_before_its_passes(data, tmp_path):
  neglection = tmp_path / "neglection.json"
  artifacts.write_json(str(neglection), {"selected": [3, 1], "num_classes": 12})
  result = _run_binary("yt8m_partition", f"--train_data={data / 'train'}",
                       f"--neglection={neglection}", f"--output={tmp_path / 'plan.npz'}",
                       "--num_classes=12", "--extrapolation=5")
  assert result.returncode == 1, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if re.match(r"[\w.-]+: error: ", line)]
  assert len(errors) == 1 and "extrapolation=5.0" in errors[0], result.stderr[-2000:]
  assert "Algorithm 1, pass" not in result.stderr and not (tmp_path / "plan.npz").exists()


def test_yt8m_train_refuses_a_plan_made_for_other_features(data, tmp_path):
  plan = tmp_path / "plan.npz"
  plan_lib.save_plan(str(plan), _plan_for(("mean_rgb", "mean_audio"), (1024, 128)))
  result = _run_binary("yt8m_train", f"--train_data={data / 'train'}",
                       f"--train_dir={tmp_path / 'run'}", "--num_classes=12", "--model=logistic",
                       "--feature_names=mean_audio,mean_rgb", "--feature_sizes=128,1024",
                       f"--subclass_plan={plan}")
  assert result.returncode == 1, result.stderr[-2000:]
  assert f"{plan}: plan is for features (mean_rgb, mean_audio), the data has (mean_audio, " \
         "mean_rgb) (--feature_names)" in result.stderr, result.stderr[-2000:]
  assert not (tmp_path / "run" / training.MODEL_FILE).exists()


def test_yt8m_sdnn_on_a_full_disk_prints_one_line_and_exits_1(data, tmp_path):
  """A 128 kB work dir fills at the θ stage's first weights file (HDF5). The error used
  to be followed by h5py's tracebacks and a segfault at exit (HDF5's exit handler
  closing the ids the failed close left: status 139)."""
  with small_tmpfs(tmp_path / "full", "128k") as mount:
    result = _run_binary("yt8m_pipeline", f"--train_data={data / 'train'}",
                         f"--eval_data={data / 'validate'}", f"--work_dir={mount / 'work'}",
                         "--num_classes=12", "--batch_size=64", "--num_epochs=1",
                         "--stages=sdnn", "--model=logistic", "--neglection_steps=2",
                         "--top_k_classes=3")
    left = sorted(str(path) for path in mount.rglob("*tmp*"))
  assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
  errors = [line for line in result.stderr.splitlines() if re.match(r"[\w.-]+: error: ", line)]
  assert len(errors) == 1, result.stderr[-3000:]
  assert errors[0].startswith("yt8m_pipeline.py: error: ")
  assert "weights.h5: no space left on the device" in errors[0]
  assert "Traceback" not in result.stderr and left == []
