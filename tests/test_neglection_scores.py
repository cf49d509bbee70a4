"""Neglection scores beyond the paper: the frequency-only null, the residual, the oracles."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import keras
import numpy as np
import pytest

from yt8m_sdnn import artifacts, models, training
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.neglection import attach_neglection_monitor, scores, statistics
from yt8m_sdnn.experiments import measure
from yt8m_sdnn.experiments import oracle


def _null(features, labels, **kwargs):
  return np.asarray(statistics.null_neglection_ratios(
      np.asarray(features, np.float32), np.asarray(labels, np.float32), **kwargs))


def test_null_ratio_hand_checked_cases():
  # Rows x and -x, one positive: μ = 0, s² = ‖x‖², p = ½ → (‖x‖/2 + ‖x‖/2) / (‖x‖/√2) = √2.
  np.testing.assert_allclose(_null([[3.0, 4.0], [-3.0, -4.0]], [[1.0], [0.0]]), [math.sqrt(2)],
                             rtol=1e-6)
  # μ = (1, 0), s² = 1, n = 4, one positive (p = ¼):
  # (¾ √(1 + 1) + ¼ √(9 + 3)) / √(1 · 1 · 3 / 4).
  features = [[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]
  expected = (0.75 * math.sqrt(2) + 0.25 * math.sqrt(12)) / math.sqrt(0.75)
  np.testing.assert_allclose(_null(features, [[1.0], [0.0], [0.0], [0.0]]), [expected],
                             rtol=1e-6)
  # No positive, or no negative: one part vanishes, r⁰ = 1 exactly (as r would be).
  np.testing.assert_array_equal(_null(features, [[0.0, 1.0]] * 4), [1.0, 1.0])
  # A zero-weight row is not an observation: dropping it equals weighting it 0.
  with_padding = _null(features + [[9.0, 9.0]], [[1.0], [0.0], [0.0], [0.0], [1.0]],
                       sample_weight=np.array([1, 1, 1, 1, 0], np.float32))
  np.testing.assert_allclose(with_padding, [expected], rtol=1e-6)


def test_null_normalized_is_one_for_a_frequency_only_model_at_every_frequency():
  """The property the score exists for: θ grows with frequency, θ / θ⁰ does not."""
  rng = np.random.default_rng(0)
  rates = np.array([0.01, 0.03, 0.1, 0.3, 0.5])
  mean = np.zeros(32)
  mean[0] = 2.0  # features with a common mean, as YT8M's
  sums = {key: np.zeros(rates.size) for key in ("ratio_sums", "null_ratio_sums",
                                                 "positive_minibatches", "positive_counts")}
  for _ in range(40):
    x = (mean + rng.normal(size=(256, 32))).astype(np.float32)
    y = (rng.random((256, rates.size)) < rates).astype(np.float32)
    q = np.broadcast_to(y.mean(axis=0), y.shape).astype(np.float32)  # learned nothing else
    ratios, has_positive = statistics.minibatch_neglection_ratios(x, q, y)
    has_positive = np.asarray(has_positive)
    sums["ratio_sums"] += np.asarray(ratios) * has_positive
    sums["null_ratio_sums"] += _null(x, y) * has_positive
    sums["positive_minibatches"] += has_positive
    sums["positive_counts"] += y.sum(axis=0)
  sums["num_minibatches"] = 40.0
  theta = scores.tracked_scores("paper", sums)
  normalized = scores.tracked_scores("null_normalized", sums)
  assert theta[-1] > 2.5 * theta[0]  # the paper's θ ranks these by frequency alone
  np.testing.assert_allclose(normalized, 1.0, atol=0.06)


def test_paper_score_is_neglection_scores_bit_for_bit():
  rng = np.random.default_rng(1)
  sums = {"ratio_sums": rng.random(7) * 5, "null_ratio_sums": rng.random(7) * 5,
          "positive_minibatches": np.array([0, 1, 2, 3, 4, 5, 6.0]),
          "positive_counts": np.arange(7.0), "num_minibatches": 6.0}
  for mode in statistics.NO_POSITIVE_MODES:
    expected = statistics.neglection_scores(sums["ratio_sums"], sums["positive_minibatches"],
                                            6.0, no_positive=mode)
    np.testing.assert_array_equal(scores.tracked_scores("paper", sums, no_positive=mode),
                                  expected)


def test_null_normalized_and_residual_worked_examples():
  np.testing.assert_allclose(scores.null_normalized_scores([6.0, 0.0], [3.0, 0.0], [2.0, 0.0], 4),
                             [2.0, np.nan])
  # "include": the 2 minibatches without a positive add 1 to both sums.
  np.testing.assert_allclose(
      scores.null_normalized_scores([6.0], [3.0], [2.0], 4, no_positive="include"), [8 / 5])
  np.testing.assert_allclose(
      scores.frequency_residual([1.0, 2.0, 3.0, 10.0, 20.0, 30.0], [1, 2, 3, 4, 5, 6], 3),
      [0.5, 1.0, 1.0, 1.0, 1.0, 1.5])
  # NaN stays NaN and is left out of its neighbours' medians; order follows frequency.
  np.testing.assert_allclose(
      scores.frequency_residual([4.0, np.nan, 1.0, 2.0], [9, 1, 1, 5], 2),
      [4.0 / 3.0, np.nan, 1.0 / 1.5, 2.0 / 3.0])  # windows (1, 2) (2, 4) (2, 4)
  with pytest.raises(ValueError, match="num_neighbours"):
    scores.frequency_residual([1.0], [1.0], 0)


def test_oracles_from_ap():
  np.testing.assert_allclose(
      scores.oracle_from_ap("low_val_ap", [0.9, 0.2, 0.1], [10, 10, 1], min_positives=5),
      [0.1, 0.8, np.nan])
  np.testing.assert_allclose(
      scores.oracle_from_ap("ap_gap", [0.5, 0.2], [9, 9], train_ap=[0.9, 0.3]), [0.4, 0.1])
  with pytest.raises(ValueError, match="needs the training AP"):
    scores.oracle_from_ap("ap_gap", [0.5], [9])
  with pytest.raises(ValueError, match=r"Expected one of \['low_val_ap', 'ap_gap'\]"):
    scores.oracle_from_ap("paper", [0.5], [9])


def test_monitor_selects_by_its_score_and_records_it(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 8)).astype(np.float32)
  y = (rng.random((256, 6)) < np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.6])).astype(np.float32)
  chosen = {}
  for score in ("paper", "null_normalized", "frequency_residual"):
    keras.utils.set_random_seed(0)
    wrapper, monitor = attach_neglection_monitor(models.build_logistic(8, 6), tau=4,
                                                 top_k_classes=2, score=score)
    wrapper.compile(optimizer="sgd", loss="binary_crossentropy")
    wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    payload = monitor.to_dict()
    assert payload["score"] == score
    values = np.array([np.nan if v is None else v for v in payload["score_values"]])
    assert payload["selected"] == list(np.argsort(-values, kind="stable")[:2])
    chosen[score] = payload
    # A backup round trip keeps every window's sums, so the restored monitor agrees.
    restored = attach_neglection_monitor(models.build_logistic(8, 6), tau=4, top_k_classes=2,
                                         score=score)[1]
    restored.restore_backup_state(json.loads(json.dumps(monitor.backup_state())))
    assert restored.to_dict() == payload
  # Same training, same θ: the score changes the ranking only.
  assert chosen["paper"]["theta"] == chosen["null_normalized"]["theta"]
  assert chosen["paper"]["score_values"] == chosen["paper"]["theta"]
  with pytest.raises(ValueError, match="Expected one of"):
    attach_neglection_monitor(models.build_logistic(8, 6), tau=4, score="low_val_ap")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("scores")
  synthetic.generate(synthetic.SynthConfig(output_dir=str(root / "data"), num_classes=12,
                                           num_train=256, num_validate=128, num_shards=2,
                                           num_hard_classes=2))
  train = reader.ReaderConfig(str(root / "data" / "train"), num_classes=12, batch_size=64,
                              training=True, seed=0)
  val = reader.ReaderConfig(str(root / "data" / "validate"), num_classes=12)
  return root, train, val


def test_oracle_writes_its_selection_from_validation_only(tiny, tmp_path):
  root, train, val = tiny
  model = models.build_logistic(train.feature_size, 12)
  payload = oracle.measure_oracle("ap_gap", model, val, train, str(tmp_path), top_k_classes=3,
                                  min_positives=2)
  written = json.loads((tmp_path / measure.NEGLECTION_FILE).read_text())
  assert written == payload
  assert payload["score"] == "ap_gap" and len(payload["selected"]) == 3
  gap = np.array(payload["train_class_ap"], float) - np.array(payload["val_class_ap"], float)
  enough = np.array(payload["val_positives"]) >= 2
  top = np.argsort(-np.where(enough, gap, -np.inf), kind="stable")[:3]
  assert sorted(payload["selected"]) == sorted(top.tolist())


def test_pipeline_measures_late_from_the_baseline_and_checks_oracle_needs(tiny):
  root, train, val = tiny
  config = pipeline.PipelineConfig(
      work_dir=str(root / "work"), train_reader=train, eval_reader=val, val_reader=val,
      train=training.TrainConfig(train_dir="", num_epochs=2, seed=0, patience=1,
                                 learning_rate=0.03, learning_rate_decay=1.0),
      model="logistic", stages=("sdnn",), neglection_steps=4, top_k_classes=2,
      neglection_score="null_normalized", neglection_from_baseline=True)
  comparison = pipeline.run(config)
  baseline_model = os.path.join(config.work_dir, "baseline", training.MODEL_FILE)
  assert os.path.exists(baseline_model)  # the baseline row was trained first
  neglection = json.loads(open(os.path.join(config.work_dir, "neglection",
                                            measure.NEGLECTION_FILE)).read())
  assert neglection["score"] == "null_normalized"
  assert neglection["init_model"] == baseline_model
  assert comparison["selected"] == neglection["selected"]
  with pytest.raises(ValueError, match="oracle read on validation shards"):
    dataclasses.replace(config, val_reader=None, neglection_score="low_val_ap",
                        neglection_from_baseline=False)
  with pytest.raises(ValueError, match="Expected one of"):
    dataclasses.replace(config, neglection_score="bogus")


def test_init_model_of_another_shape_is_refused(tiny, tmp_path):
  root, train, _ = tiny
  other = tmp_path / "other.keras"
  models.build_logistic(train.feature_size, 5).save(other)
  config = training.TrainConfig(train_dir=str(tmp_path / "theta"), model="logistic")
  with pytest.raises(ValueError, match="do not match"):
    measure.measure_neglection(config, train, 1.0, num_steps=2, init_model=str(other))
  with pytest.raises(ValueError, match="does not exist"):
    measure.measure_neglection(config, train, 1.0, num_steps=2,
                               init_model=str(tmp_path / "missing.keras"))


def test_frequency_residual_removes_a_frequency_trend():
  rng = np.random.default_rng(0)
  frequency = rng.integers(1, 5000, size=400).astype(float)
  noise = rng.lognormal(0.0, 0.2, size=400)
  theta = np.sqrt(frequency) * noise  # θ's √n⁺ trend times the class's own share
  residual = scores.frequency_residual(theta, frequency)
  def rho(a, b):
    ranks = lambda v: np.argsort(np.argsort(v))
    return np.corrcoef(ranks(a), ranks(b))[0, 1]
  assert rho(theta, frequency) > 0.8
  assert abs(rho(residual, frequency)) < 0.15
  assert rho(residual, noise) > 0.8  # what is left is the class's own part


def test_reports_of_every_tracked_score_from_json_history():
  """A report's JSON history holds the sums, so any tracked score is recomputed from it."""
  # pylint: disable-next=import-outside-toplevel
  from yt8m_sdnn.experiments import neglection_report
  rng = np.random.default_rng(2)
  x = rng.normal(size=(384, 8)).astype(np.float32)
  y = (rng.random((384, 6)) < np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.6])).astype(np.float32)
  keras.utils.set_random_seed(0)
  wrapper, monitor = attach_neglection_monitor(models.build_logistic(8, 6), tau=2, top_k_classes=2)
  wrapper.compile(optimizer="sgd", loss="binary_crossentropy")
  wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
  history = monitor.history
  as_json = json.loads(json.dumps(artifacts.json_value([
      {key: window[key] for key in ("end_iteration", "num_iterations", "theta",
                                    *scores.SUM_KEYS)} for window in history])))
  class_ap, counts = rng.random(6), y.sum(axis=0)
  for score in scores.TRACKED_SCORES:
    live = neglection_report.neglection_report(history, class_ap, counts, score=score,
                                               top_fraction=0.5)
    again = neglection_report.neglection_report(as_json, class_ap, counts, score=score,
                                                top_fraction=0.5)
    # json_value: NaN (e.g. ρ of a tercile of 2 classes) as None, comparable.
    assert artifacts.json_value(live) == artifacts.json_value(again) and live["score"] == score
    # The cumulative score over all windows equals one window over the whole run.
    totals = {key: sum(np.asarray(w[key], float) for w in history) for key in scores.SUM_KEYS}
    np.testing.assert_allclose(neglection_report.cumulative_scores(history, score)[-1],
                               scores.tracked_scores(score, totals))
  with pytest.raises(ValueError, match="needs each window's sums"):
    neglection_report.window_scores([{"theta": [1.0]}], "null_normalized")
