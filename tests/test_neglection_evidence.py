"""The Figure-1 evidence: AP, rank correlations and the θ report by hand, and the binary."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from yt8m_sdnn import artifacts, training
from yt8m_sdnn.data import reader
from yt8m_sdnn.experiments import class_ap, evidence, neglection_report, rank_statistics
from yt8m_sdnn.experiments import plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_per_class_average_precision_by_hand():
  scores = [[0.9, 0.1, 0.3, 0.4],
            [0.8, 0.9, 0.2, 0.3],
            [0.7, 0.2, 0.1, 0.2],
            [0.6, 0.8, 0.0, 0.1]]
  labels = [[1, 0, 0, 0],
            [0, 1, 0, 0],
            [1, 0, 0, 0],
            [0, 1, 0, 1]]
  # Class 0: hits at ranks 1 and 3: (1/1 + 2/3) / 2 = 0.8333.
  # Class 1: sorted 0.9 (hit), 0.8 (hit): (1/1 + 2/2) / 2 = 1.
  # Class 2: no positive: NaN.  Class 3: its one positive ranks last: 1/4.
  np.testing.assert_allclose(class_ap.per_class_average_precision(scores, labels),
                             [5 / 6, 1.0, np.nan, 0.25])


def test_per_class_average_precision_matches_scikit_learn():
  rng = np.random.default_rng(0)
  # 600 classes: more than one block of columns.
  scores = rng.random((200, 600))
  labels = rng.random((200, 600)) < 0.05
  labels[:, 7] = False
  average_precision = class_ap.per_class_average_precision(scores, labels)
  with_positive = np.flatnonzero(labels.any(axis=0))
  expected = [average_precision_score(labels[:, c], scores[:, c]) for c in with_positive]
  np.testing.assert_allclose(average_precision[with_positive], expected, atol=1e-12)
  assert np.isnan(average_precision[7])


def test_per_class_average_precision_checks_shapes():
  with pytest.raises(ValueError, match="2-D scores and labels of one shape"):
    class_ap.per_class_average_precision(np.zeros((3, 2)), np.zeros((3, 4)))


def test_average_ranks_share_ties():
  # Sorted: 1 (rank 1), 2, 2 (ranks 2 and 3 -> 2.5 each), 5 (rank 4).
  np.testing.assert_array_equal(rank_statistics.average_ranks([2, 1, 5, 2]), [2.5, 1, 4, 2.5])


def test_spearman_by_hand():
  assert rank_statistics.spearman_rank_correlation([1, 2, 3, 4],
                                                   [10, 20, 30, 40]) == pytest.approx(1.0)
  assert rank_statistics.spearman_rank_correlation([1, 2, 3, 4],
                                                   [4, 3, 2, 1]) == pytest.approx(-1.0)
  # Ranks (1,2,3) vs (1,3,2): d² = 0+1+1 = 2, ρ = 1 - 6·2 / (3·8) = 0.5.
  assert rank_statistics.spearman_rank_correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_spearman_with_ties_by_hand():
  # Ranks (1, 2.5, 2.5, 4) and (1, 2, 3, 4); centred: (-1.5, 0, 0, 1.5), (-1.5, -.5, .5, 1.5).
  # Σab = 2.25 + 2.25 = 4.5, Σa² = 4.5, Σb² = 5: ρ = 4.5 / √22.5 = 0.94868.
  assert rank_statistics.spearman_rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(
      0.94868, abs=1e-5)


def test_spearman_ignores_missing_pairs():
  assert rank_statistics.spearman_rank_correlation([1, np.nan, 2, 3, 4],
                                                   [1, 5, 2, 3, 4]) == pytest.approx(1.0)
  assert rank_statistics.spearman_rank_correlation([1, None, 2, 3],
                                                   [3, 0, 2, 1]) == pytest.approx(-1.0)
  assert np.isnan(rank_statistics.spearman_rank_correlation([1, 2], [2, 1]))  # < 3 pairs
  assert np.isnan(rank_statistics.spearman_rank_correlation([1, 1, 1], [1, 2, 3]))  # constant
  with pytest.raises(ValueError, match="one length"):
    rank_statistics.spearman_rank_correlation([1, 2, 3], [1, 2])


def test_partial_correlation_by_hand():
  # (0.113 - 0.779 * 0.223) / sqrt((1 - 0.779²)(1 - 0.223²)) = -0.0607 / 0.6112 ≈ -0.0994
  assert rank_statistics.partial_correlation(0.113, 0.779, 0.223) == pytest.approx(-0.0994,
                                                                                   abs=1e-3)


def test_rank_correlation_within_strata_by_hand():
  # Sorted by the third argument: classes {0, 1, 2} then {3, 4, 5}; θ rises with AP in
  # the first group (ρ = 1) and falls in the second (ρ = -1).
  values = rank_statistics.rank_correlation_within_strata(
      [1, 2, 3, 3, 2, 1], [1, 2, 3, 1, 2, 3], [1, 2, 3, 4, 5, 6], num_strata=2)
  np.testing.assert_allclose(values, [1.0, -1.0])


def test_hypergeometric_tail_by_hand():
  # One draw from 10 classes, 2 of them hard: P(X ≥ 1) = 2/10.
  assert rank_statistics.hypergeometric_tail(1, 10, 2, 1) == pytest.approx(0.2)
  # Two draws, both hard: C(2,2) / C(10,2) = 1/45.
  assert rank_statistics.hypergeometric_tail(2, 10, 2, 2) == pytest.approx(1 / 45)
  assert rank_statistics.hypergeometric_tail(0, 10, 2, 2) == pytest.approx(1.0)


def test_cumulative_theta_weights_windows_by_positive_minibatches():
  history = [{"theta": [2.0, None], "positive_minibatches": [2, 0]},
             {"theta": [5.0, 3.0], "positive_minibatches": [1, 4]}]
  first, second = neglection_report.cumulative_theta(history)
  np.testing.assert_allclose(first, [2.0, np.nan])
  # Class 0: (2·2 + 5·1) / 3 = 3; class 1: only the second window: 3.
  np.testing.assert_allclose(second, [3.0, 3.0])


# Nine classes, class 0 the most frequent. Across frequency terciles AP follows
# frequency; inside each tercile it falls with frequency.
COUNTS = [90, 80, 70, 60, 50, 40, 30, 20, 10]
AP = [0.7, 0.8, 0.9, 0.4, 0.5, 0.6, 0.1, 0.2, 0.3]
HISTORY = [
    # θ follows frequency exactly.
    {"end_iteration": 10, "num_iterations": 10, "theta": [9, 8, 7, 6, 5, 4, 3, 2, 1],
     "positive_minibatches": [1] * 9},
    # θ falls exactly as AP rises (the Figure-1 claim).
    {"end_iteration": 20, "num_iterations": 10, "theta": [3, 2, 1, 6, 5, 4, 9, 8, 7],
     "positive_minibatches": [1] * 9},
]


def test_report_by_hand():
  report = neglection_report.neglection_report(HISTORY, AP, COUNTS, hard_classes=[6, 0],
                                               top_fraction=0.34)
  assert report["num_selected"] == 3  # floor(0.34 · 9)
  # AP ranks (1 = lowest) are 7 8 9 4 5 6 1 2 3, frequency ranks 9 8 ... 1:
  # d = 2 0 -2 2 0 -2 2 0 -2, Σd² = 24, ρ = 1 - 6·24 / (9·80) = 0.8.
  assert report["rho_ap_frequency"] == pytest.approx(0.8)
  first, second = report["windows"]
  # Window 1: θ ranks = frequency ranks, so ρ(θ, AP) = 0.8 and ρ(θ, frequency) = 1;
  # with frequency explaining θ fully the partial ρ is undefined; inside each tercile
  # θ falls as AP rises: ρ = -1 three times.
  assert first["rho_theta_ap"] == pytest.approx(0.8)
  assert first["rho_theta_frequency"] == pytest.approx(1.0)
  assert math.isnan(first["rho_theta_ap_given_frequency"])
  np.testing.assert_allclose(first["rho_theta_ap_within_frequency_terciles"], [-1, -1, -1])
  assert first["rho_theta_ap_stratified"] == pytest.approx(-1.0)
  # Top 3 by θ: classes 0, 1, 2: mean AP 0.8, rest (0.4+0.5+0.6+0.1+0.2+0.3)/6 = 0.35.
  assert first["mean_ap_selected"] == pytest.approx(0.8)
  assert first["mean_ap_not_selected"] == pytest.approx(0.35)
  # Window 2: ρ(θ, AP) = -1, ρ(θ, frequency) = -0.8, partial
  # (-1 - (-0.8)(0.8)) / √((1 - 0.64)(1 - 0.64)) = -0.36 / 0.36 = -1.
  assert second["rho_theta_ap"] == pytest.approx(-1.0)
  assert second["rho_theta_frequency"] == pytest.approx(-0.8)
  assert second["rho_theta_ap_given_frequency"] == pytest.approx(-1.0)
  assert second["rho_theta_ap_stratified"] == pytest.approx(-1.0)
  # Top 3: classes 6, 7, 8 (AP 0.1, 0.2, 0.3): one hard class (6) of 2; chance 2·3/9;
  # P(X ≥ 1) = 1 - C(7,3)/C(9,3) = 1 - 35/84.
  assert second["mean_ap_selected"] == pytest.approx(0.2)
  assert second["hard_selected"] == 1 and second["hard_share_of_selected"] == pytest.approx(1 / 3)
  assert second["hard_expected_by_chance"] == pytest.approx(2 / 3)
  assert second["hard_selected_p_value"] == pytest.approx(49 / 84)
  assert second["num_classes_compared"] == 9
  assert second["null_band_95"] == pytest.approx(1.96 / math.sqrt(8))
  # Iterations 1..20: θ = (window 1 + window 2) / 2 = 6 5 4 6 5 4 6 5 4; ranks 8 5 2 ...
  # centred 3 0 -3 (×3); AP ranks centred 2 3 4 -1 0 1 -4 -3 -2:
  # Σ = 6 - 12 - 3 - 3 - 12 + 6 = -18, ρ = -18 / √(54 · 60) = -0.3162.
  assert report["cumulative"][1]["rho_theta_ap"] == pytest.approx(-0.3162, abs=1e-4)
  assert report["cumulative"][0]["rho_theta_ap"] == pytest.approx(0.8)


def test_report_leaves_out_classes_without_theta_or_ap():
  history = [{"end_iteration": 5, "theta": [3.0, 2.0, 1.0, None, 7.0]}]
  report = neglection_report.neglection_report(history, [0.1, 0.5, 0.9, 0.3, None],
                                               [5, 4, 3, 2, 1])
  window = report["windows"][0]
  assert window["num_classes_compared"] == 3 and window["rho_theta_ap"] == pytest.approx(-1.0)
  assert "hard_selected" not in window
  assert report["cumulative"] == []  # no positive_minibatches in this history


def test_report_checks_its_inputs():
  with pytest.raises(ValueError, match="same classes"):
    neglection_report.neglection_report(HISTORY, AP[:8], COUNTS)
  with pytest.raises(ValueError, match=r"hard classes \[9\] are outside \[0, 9\)"):
    neglection_report.neglection_report(HISTORY, AP, COUNTS, hard_classes=[9])


def test_report_table_has_a_row_per_window():
  report = neglection_report.neglection_report(HISTORY, AP, COUNTS, hard_classes=[6, 0],
                                               top_fraction=0.34)
  lines = neglection_report.format_report_table(report).splitlines()
  assert len(lines) == 2 + len(HISTORY)
  assert {line.count("|") for line in lines} == {8}  # 7 columns, no stray pipes
  assert lines[3].startswith("| 20 | −1.000 | −0.800 |") and "1 (0.7; 0.58)" in lines[3]
  with pytest.raises(ValueError, match="Expected one of"):
    neglection_report.format_report_table(report, "epochs")


def test_json_value_turns_nan_into_null():
  payload = artifacts.json_value({"a": np.array([1.0, np.nan]), "b": np.int64(3),
                                 "c": [float("nan"), (np.float32(0.5),)]})
  assert payload == {"a": [1.0, None], "b": 3, "c": [None, [0.5]]}
  json.dumps(payload, allow_nan=False)


def test_read_hard_classes(tmp_path):
  path = tmp_path / "hard_classes.json"
  path.write_text(json.dumps({"hard_classes": [1, 4], "num_classes": 6}))
  assert neglection_report.read_hard_classes(str(path), num_classes=6) == [1, 4]
  with pytest.raises(artifacts.ArtifactError, match=r"class ids in \[0, 4\)"):
    neglection_report.read_hard_classes(str(path), num_classes=4)
  with pytest.raises(artifacts.ArtifactError, match="file not found"):
    neglection_report.read_hard_classes(str(tmp_path / "missing.json"), num_classes=6)


def test_refuses_to_resume_a_killed_run(tmp_path):
  backup = tmp_path / "run" / "backup"
  backup.mkdir(parents=True)
  (backup / "w.weights.h5").write_bytes(b"")
  (backup / training.BACKUP_STATE_FILE).write_text(
      json.dumps({"epoch": 0, "step": 3, "weights": "w.weights.h5"}))
  config = reader.ReaderConfig(str(tmp_path / "none"), num_classes=4)
  with pytest.raises(ValueError, match="θ history is lost"):
    evidence.measure_neglection_evidence(training.TrainConfig(str(tmp_path / "run")),
                                         config, config, tau=2)


def test_plot_names_the_missing_package(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  assert not plot.matplotlib_available()
  with pytest.raises(ImportError, match="pip install matplotlib"):
    plot.plot_neglection_evidence({}, "/tmp/never-written.png")


# The binary, end to end on tiny synthetic shards.

def run_binary(*flags: str, pythonpath: str = ROOT) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=pythonpath, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "bin.yt8m_neglection_report", *flags],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def binary_flags(synthetic_dir, train_dir, *extra):
  return (f"--train_data={synthetic_dir}/train", f"--eval_data={synthetic_dir}/validate",
          f"--train_dir={train_dir}", "--num_classes=12", "--batch_size=32", "--num_epochs=1",
          "--tau=3", f"--hard_classes_json={synthetic_dir}/hard_classes.json", "--seed=0", *extra)


@pytest.fixture(scope="module")
def report_run(synthetic_dir, tmp_path_factory):
  """One run of the binary, drawing the plot too where matplotlib is installed.

  Returns (the finished process, its --train_dir, the --plot path).
  """
  root = tmp_path_factory.mktemp("report")
  png = root / "figures" / "theta_vs_ap.png"
  extra = [f"--plot={png}"] if plot.matplotlib_available() else []
  return run_binary(*binary_flags(synthetic_dir, root / "run", *extra)), root / "run", png


def test_binary_writes_the_report(synthetic_dir, report_run):
  result, train_dir, _ = report_run
  assert result.returncode == 0, result.stderr[-3000:]
  payload = json.loads((train_dir / "neglection_report.json").read_text())
  # 256 videos / 32 = 8 iterations; windows close at 3, 6 and (flushed) 8.
  assert payload["train_steps"] == 8
  assert [w["end_iteration"] for w in payload["history"]] == [3, 6, 8]
  assert [w["num_iterations"] for w in payload["history"]] == [3, 3, 2]
  report = payload["report"]
  assert len(report["windows"]) == len(report["cumulative"]) == 3
  assert report["num_selected"] == 1  # floor(0.1 · 12)
  assert payload["hard_classes"] == json.loads(
      (synthetic_dir / "hard_classes.json").read_text())["hard_classes"]
  assert {"rho_theta_ap", "rho_theta_ap_stratified", "hard_selected_p_value"} <= set(
      report["windows"][-1])
  assert len(payload["class_ap"]) == len(payload["class_counts"]) == 12
  assert sum(payload["class_counts"]) >= 256 and payload["num_eval_videos"] == 96
  assert (train_dir / "model.keras").is_file()
  assert "| θ over window ending at p: p | ρ(θ, AP) |" in result.stdout


def test_binary_draws_the_plot(report_run):
  pytest.importorskip("matplotlib")
  result, _, png = report_run
  assert result.returncode == 0, result.stderr[-3000:]
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_binary_without_matplotlib_stops_before_training(synthetic_dir, tmp_path):
  # A `matplotlib` that cannot be imported, first on the path.
  fake = tmp_path / "no_matplotlib" / "matplotlib"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
  result = run_binary(*binary_flags(synthetic_dir, tmp_path / "run", f"--plot={tmp_path}/x.png"),
                      pythonpath=f"{fake.parent}{os.pathsep}{ROOT}")
  assert result.returncode != 0
  assert "pip install matplotlib" in result.stderr
  assert not (tmp_path / "run").exists()
