"""Selection under a coverage cap and a frequency band, and its frequency-matched control.

θ ranks head classes first, so its 10% put a copy beside 86-90% of the training
videos (issue 34); `selection.SelectionRule` keeps that share under a cap, exactly
counted. Hand-checked numpy cases first, then the streaming pass over shards, then
`pipeline.run` and `yt8m-sdnn` on 128 synthetic videos.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, binary_env
from yt8m_sdnn import artifacts, training
from yt8m_sdnn.data import class_counts, reader, synthetic
from yt8m_sdnn.experiments import measure, pipeline, stage_settings
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.subclass import plan as plan_lib

# 10 videos, 4 classes. Class 0: videos 0-2; class 1: videos 0-1 (inside class 0's);
# class 2: video 3; class 3: videos 4-8. Positives 3, 2, 1, 5.
LABELS = np.zeros((10, 4), np.float32)
LABELS[[0, 1, 2], 0] = LABELS[[0, 1], 1] = LABELS[3, 2] = LABELS[[4, 5, 6, 7, 8], 3] = 1
POSITIVES = LABELS.sum(0).astype(np.int64)
SCORES = np.array([4.0, 3.0, 2.0, 1.0])
EXACT = functools.partial(selection.covered_by_prefix, LABELS)
MATCHED = selection.MATCHED_RANDOM


def test_covered_by_prefix_counts_each_video_once():
  # ranked [0, 1, 2, 3]: class 0 covers 3; class 1 adds none (videos 0, 1 again);
  # class 2 adds video 3; class 3 adds 5 -> 0, 3, 3, 4, 9. Video 9 has no label.
  np.testing.assert_array_equal(EXACT(np.array([0, 1, 2, 3])), [0, 3, 3, 4, 9])
  # The Σ-positives bound counts videos 0 and 1 twice: 0, 3, 5, 6, 11.
  np.testing.assert_array_equal(selection.positives_bound(POSITIVES, [0, 1, 2, 3]),
                                [0, 3, 5, 6, 11])


@pytest.mark.parametrize("rule, scores, covered, max_classes, expected", [
    # Cap 0.4 of 10 videos = 4; class 3 (5 positives) alone exceeds it, so is out.
    # Exact: 0, 1, 2 cover videos 0-3 = 4 <= 4.
    (selection.SelectionRule(max_coverage=0.4), SCORES, EXACT, None, [0, 1, 2]),
    # The bound counts 3 + 2 = 5 > 4 after class 1: it stops after class 0.
    (selection.SelectionRule(max_coverage=0.4), SCORES, None, None, [0]),
    # Cap 0.3 = 3 videos: 0 and 1 (3 videos); class 2 would make 4.
    (selection.SelectionRule(max_coverage=0.3), SCORES, EXACT, None, [0, 1]),
    # Score order kept: scores 1, 3, 2, 4 rank 3, 1, 2, 0; class 3 is over the cap;
    # 1 (2 videos), 2 (3), 0 (4): all fit, in score order.
    (selection.SelectionRule(max_coverage=0.4), [1.0, 3.0, 2.0, 4.0], EXACT, None, [1, 2, 0]),
    # A longer prefix is never taken past one that does not fit, even where a later
    # class would: the selection is a top-k of the score. Cap 0.2 = 2 videos: class 0
    # (3) is out alone; 1 (2 videos) fits; 2 would make 3.
    (selection.SelectionRule(max_coverage=0.2), SCORES, EXACT, None, [1]),
    # The count limit (top_k_classes) applies too.
    (selection.SelectionRule(max_coverage=0.4), SCORES, EXACT, 2, [0, 1]),
    # The band: at least 2 positives -> 0, 1, 3 (no cap: 3 is in).
    (selection.SelectionRule(min_train_positives=2), SCORES, None, None, [0, 1, 3]),
    # At most 2 positives -> 1, 2.
    (selection.SelectionRule(max_train_positives=2), SCORES, None, None, [1, 2]),
    (selection.SelectionRule(min_train_positives=2, max_train_positives=3), SCORES, None, None,
     [0, 1]),
    # A class without a score (NaN) is never selected.
    (selection.SelectionRule(max_coverage=0.4), [np.nan, 3.0, 2.0, 1.0], EXACT, None, [1, 2]),
    # The default rule is the plain ranking.
    (selection.SelectionRule(), SCORES, None, None, [0, 1, 2, 3]),
])
def test_select_within_coverage(rule, scores, covered, max_classes, expected):
  selected = selection.select_within_coverage(scores, POSITIVES, 10, rule, max_classes, covered)
  assert selected.tolist() == expected
  if rule.max_coverage is not None:  # the videos that get a copy, by hand
    assert LABELS[:, selected].any(axis=1).sum() <= rule.max_coverage * 10


@pytest.mark.parametrize("fields, message", [
    ({"selection": "random"}, "Expected one of ['score', 'matched_random']"),
    ({"max_coverage": 0.0}, "0 < max_coverage <= 1"),
    ({"max_coverage": 1.5}, "0 < max_coverage <= 1"),
    ({"min_train_positives": -1}, "min_train_positives >= 0"),
    ({"max_train_positives": 0}, "max_train_positives >= 1"),
    ({"min_train_positives": 5, "max_train_positives": 4}, "min_train_positives <= max"),
])
def test_a_rule_out_of_range_is_refused(fields, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    selection.SelectionRule(**fields)


def test_a_file_without_the_rule_reads_as_no_cap():
  assert selection.SelectionRule.from_json({"selected": [1]}) == selection.SelectionRule()
  rule = selection.SelectionRule(MATCHED, 0.02, 3, None)
  assert selection.SelectionRule.from_json(json.loads(json.dumps(rule.to_json()))) == rule


def _bench_matched_random(selected, counts, seed, neighbours=10):
  """bench.evidence_scores' control as first written (the draws of its committed rows)."""
  rng = np.random.default_rng(seed)
  by_frequency = np.argsort(counts, kind="stable")
  rank = np.empty_like(by_frequency)
  rank[by_frequency] = np.arange(by_frequency.size)
  taken, chosen = set(selected), []
  for cls in selected:
    low = max(0, rank[cls] - neighbours // 2)
    window = [int(c) for c in by_frequency[low:low + neighbours + 1] if int(c) not in taken]
    pick = int(rng.choice(window)) if window else int(cls)
    taken.add(pick)
    chosen.append(pick)
  return chosen


def test_matched_random_matches_frequency_and_size_and_is_seeded():
  rng = np.random.default_rng(7)
  counts = rng.zipf(1.6, size=300).astype(np.int64)  # a long tail with many ties
  selected = rng.choice(300, size=30, replace=False)
  drawn = selection.matched_random(selected, counts, seed=3)
  assert drawn.size == selected.size and len(set(drawn.tolist())) == drawn.size
  assert not set(drawn.tolist()) & set(selected.tolist())  # a control, not the score's
  # Each draw lies within 5 + 30 ranks of its class in frequency order (the window,
  # widened by at most the 30 selected and drawn classes it skips).
  position = np.empty(300, np.int64)
  position[np.argsort(counts, kind="stable")] = np.arange(300)
  assert np.abs(position[drawn] - position[selected]).max() <= 5 + 30
  np.testing.assert_array_equal(drawn, selection.matched_random(selected, counts, seed=3))
  assert not np.array_equal(drawn, selection.matched_random(selected, counts, seed=4))
  # The draws bench.evidence_scores made before it called the library.
  for seed in (0, 1, 2):
    assert selection.matched_random(selected, counts, seed).tolist() == (
        _bench_matched_random(selected.tolist(), counts, seed))


def test_matched_random_draws_within_the_band():
  counts = np.arange(40)  # class c has c positives
  eligible = (counts >= 10) & (counts <= 30)
  drawn = selection.matched_random(np.array([10, 20, 30]), counts, seed=0, eligible=eligible)
  # Within the window's 10 ranks (at the band's edge the window lies on one side).
  assert eligible[drawn].all() and np.abs(drawn - [10, 20, 30]).max() <= 10
  # No class left around it: the class stands for itself (logged).
  assert selection.matched_random(np.array([0, 1]), np.array([5, 5]), seed=0).tolist() == [0, 1]


def test_select_gives_the_control_of_the_capped_selection():
  rule = selection.SelectionRule(MATCHED, max_coverage=0.4)
  drawn, score_selected = selection.select(SCORES, POSITIVES, 10, rule, seed=0, covered=EXACT)
  assert score_selected.tolist() == [0, 1, 2]
  # Classes 0, 1, 2 are the only eligible ones (3 is over the cap) and all selected:
  # none is left to draw, so each stands for itself; the control never leaves the band.
  assert drawn.tolist() == [0, 1, 2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("coverage_data")
  synthetic.generate(synthetic.SynthConfig(output_dir=str(root), num_classes=12, num_train=128,
                                           num_validate=32, num_shards=2, num_hard_classes=2))
  return root


def _train_reader(data) -> reader.ReaderConfig:
  return reader.ReaderConfig(str(data / "train"), num_classes=12, batch_size=64, training=True,
                             seed=0)


def _labels(data) -> np.ndarray:
  config = dataclasses.replace(_train_reader(data), training=False, num_epochs=1)
  return np.concatenate([labels.numpy() for _, labels in reader.build_dataset(config)])


def test_the_streaming_pass_counts_as_the_label_matrix(data):
  labels = _labels(data)
  ranked = np.array([11, 4, 0, 7, 2])
  covered, num_videos = class_counts.videos_covered_by_prefix(_train_reader(data), ranked)
  assert num_videos == 128
  np.testing.assert_array_equal(covered, selection.covered_by_prefix(labels, ranked))
  # By brute force: the videos with any of the first k classes.
  assert [int(labels[:, ranked[:k]].any(axis=1).sum()) for k in range(6)] == covered.tolist()


def test_apply_selection_records_the_rule_the_coverage_and_the_control(data):
  labels = _labels(data)
  positives = labels.sum(0)
  scores = np.arange(12, dtype=np.float64)  # class 11 most neglected
  payload = {"score": "paper", "score_values": scores.tolist(), "top_fraction": 1.0,
             "top_k_classes": None, "selected": list(range(12))}
  rule = selection.SelectionRule(max_coverage=0.3)
  capped = measure.apply_selection(payload, rule, _train_reader(data), seed=0)
  selected = np.array(capped["selected"])
  budget = int(0.3 * 128)
  # The longest run of the eligible ranking (classes with <= 38 positives, from 11
  # down) whose videos fit, counted by hand.
  ranked = [c for c in range(11, -1, -1) if positives[c] <= budget]
  fits = max(k for k in range(len(ranked) + 1) if labels[:, ranked[:k]].any(1).sum() <= budget)
  assert selected.tolist() == ranked[:fits] and 0 < fits < len(ranked)
  # Counted as a union: the Σ-positives bound would have stopped a class earlier.
  assert len(selected) > len(selection.select_within_coverage(scores, positives, 128, rule))
  assert capped["coverage"] == labels[:, selected].any(1).mean() <= 0.3
  assert capped["max_coverage"] == 0.3 and capped["selection"] == "score"
  assert capped["num_train_videos"] == 128 and capped["num_eligible"] == len(ranked)

  control = measure.apply_selection(payload, dataclasses.replace(rule, selection=MATCHED),
                                    _train_reader(data), seed=0)
  assert control["score_selected"] == capped["selected"]
  assert len(control["selected"]) == len(capped["selected"]) != 0
  assert control["selected"] != capped["selected"] and control["selection_seed"] == 0
  assert control["coverage"] == labels[:, control["selected"]].any(1).mean()
  assert control["score_coverage"] == capped["coverage"]
  # The default rule keeps the file's selection and says so.
  plain = measure.apply_selection(payload, selection.SelectionRule(), _train_reader(data), 0)
  assert plain["selected"] == payload["selected"] and plain["max_coverage"] is None


def test_a_band_no_class_is_in_is_refused_before_theta_trains(data, tmp_path):
  train_config = training.TrainConfig(train_dir=str(tmp_path / "theta"), model="logistic",
                                      num_epochs=1, seed=0)
  with pytest.raises(ValueError, match=r"no class is eligible under min_train_positives=1000"):
    measure.measure_neglection(train_config, _train_reader(data), 1.0, num_steps=2,
                               selection_rule=selection.SelectionRule(min_train_positives=1000))
  assert not (tmp_path / "theta" / measure.NEGLECTION_FILE).exists()
  assert not (tmp_path / "theta" / training.MODEL_FILE).exists()


def _config(data, work_dir, **changes) -> pipeline.PipelineConfig:
  fields = dict(
      work_dir=str(work_dir), train_reader=_train_reader(data),
      eval_reader=reader.ReaderConfig(str(data / "validate"), num_classes=12),
      train=training.TrainConfig(train_dir=str(work_dir), model="logistic", num_epochs=1,
                                 seed=0),
      model="logistic", stages=("sdnn",), neglection_steps=2, top_fraction=1.0,
      max_coverage=0.3)
  fields.update(changes)
  return pipeline.PipelineConfig(**fields)


def test_yt8m_sdnn_max_coverage_selects_records_and_refuses_another_on_reuse(data, tmp_path):
  work = tmp_path / "work"
  result = subprocess.run(
      [sys.executable, "-m", "bin.yt8m_pipeline", f"--train_data={data / 'train'}",
       f"--eval_data={data / 'validate'}", f"--work_dir={work}", "--num_classes=12",
       "--batch_size=64", "--num_epochs=1", "--stages=sdnn", "--model=logistic",
       "--neglection_steps=2", "--top_fraction=1", "--seed=0", "--max_coverage=0.3"],
      cwd=ROOT, env=binary_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  payload = artifacts.read_json(str(work / "neglection" / measure.NEGLECTION_FILE))
  labels = _labels(data)
  # Without the cap, --top_fraction=1 would split all 12 classes; under it, the first
  # few in θ order whose videos are at most 30% of the 128.
  assert 0 < len(payload["selected"]) < 12
  assert labels[:, payload["selected"]].any(1).mean() == payload["coverage"] <= 0.3
  eligible = selection.eligible_classes(labels.sum(0), 128, selection.SelectionRule(
      max_coverage=0.3))
  ranked = selection.rank_classes(np.array(payload["score_values"], np.float64), eligible)
  assert payload["selected"] == ranked[:len(payload["selected"])].tolist()
  assert len(payload["selected"]) < len(ranked)  # the cap, not the band, ended it
  assert plan_lib.load_plan(str(work / "partition" / "plan.npz")).selected.tolist() == (
      payload["selected"])
  comparison = artifacts.read_json(str(work / pipeline.COMPARISON_FILE))
  assert comparison["selected"] == payload["selected"]
  recorded = stage_settings.read(str(work / "neglection"))
  assert (recorded["max_coverage"], recorded["selection"]) == (0.3, "score")

  # Another rule is refused before any stage runs, by the record and by the file alone.
  for change, setting in [({"max_coverage": 0.5}, "--max_coverage: then 0.3, now 0.5"),
                          ({"selection": MATCHED},
                           '--selection: then "score", now "matched_random"'),
                          ({"min_train_positives": 5}, "--min_train_positives: then null, now 5")]:
    with pytest.raises(stage_settings.StaleStageError, match=re.escape(setting)):
      pipeline.run(_config(data, work, **change))
  (work / "neglection" / stage_settings.STAGE_SETTINGS_FILE).unlink()
  with pytest.raises(stage_settings.StaleStageError, match="--max_coverage: then 0.3, now 0.5"):
    pipeline.run(_config(data, work, max_coverage=0.5))
