"""Summaries over seeds count only the rows that finished, and say how many did."""

import os

import numpy as np
import pytest

from yt8m_sdnn import artifacts
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.experiments import seed_summary
from yt8m_sdnn.experiments import measure


def _record(gap, class_ap, steps=10):
  return {"gap": gap, "hit_at_one": gap + 0.1, "perr": gap, "map": gap / 2,
          "class_ap": class_ap, "train_steps": steps, "examples_per_second": 100.0}


def _write_run(run_dir, rows, selected=None):
  for stage, record in rows.items():
    artifacts.write_json(os.path.join(run_dir, stage.replace(":", "-"),
                                      pipeline.STAGE_RESULT_FILE), record)
  if selected is not None:
    artifacts.write_json(os.path.join(run_dir, "neglection", measure.NEGLECTION_FILE),
                         {"selected": selected, "theta": [0.0] * 4})


def test_rows_finished_for_fewer_seeds_are_counted_as_such(tmp_path):
  stages = ["baseline", "sdnn", "baseline_equal_steps:asymmetric"]
  _write_run(tmp_path / "run-0", {
      "baseline": _record(0.2, [0.1, 0.2, None, 0.4]),
      "sdnn": _record(0.3, [0.3, 0.2, None, 0.5]),
      "baseline_equal_steps:asymmetric": _record(0.5, [0.5, 0.6, None, 0.7])},
      selected=[0, 2])
  # Seed 1 stopped before its ASL row.
  _write_run(tmp_path / "run-1", {
      "baseline": _record(0.4, [0.3, 0.2, 0.1, 0.6]),
      "sdnn": _record(0.5, [0.5, 0.2, 0.1, 0.7])}, selected=[1, 2])
  runs = [seed_summary.load_run(str(tmp_path / f"run-{s}"), stages) for s in (0, 1)]
  assert "baseline_equal_steps:asymmetric" not in runs[1]
  assert runs[0]["selected"] == [0, 2]

  summary = seed_summary.summarize(runs, stages, hard_classes=[[3], [3]])
  assert summary["baseline"]["gap"] == pytest.approx((0.3, 0.1, 2))
  assert summary["baseline_equal_steps:asymmetric"]["gap"] == pytest.approx((0.5, 0.0, 1))
  # Split classes: seed 0 selected [0, 2] (class 2 has no positives: skipped) → 0.1;
  # seed 1 selected [1, 2] → mean(0.2, 0.1) = 0.15.
  assert summary["baseline"]["split"][0] == pytest.approx((0.1 + 0.15) / 2)
  assert summary["sdnn"]["hard"] == pytest.approx((0.6, 0.1, 2))

  table = seed_summary.markdown_table(summary)
  assert "| baseline_equal_steps:asymmetric | 1 | 50.00 ± 0.00 |" in table
  assert "| baseline | 2 | 30.00 ± 10.00 |" in table


def test_rows_no_seed_finished_are_left_out_and_missing_hard_classes_are_blank(tmp_path):
  _write_run(tmp_path / "run-0", {"baseline": _record(0.2, [0.1, 0.2])})
  runs = [seed_summary.load_run(str(tmp_path / "run-0"), ["baseline", "sdnn"])]
  summary = seed_summary.summarize(runs, ["baseline", "sdnn"])
  assert list(summary) == ["baseline"]
  assert np.isnan(summary["baseline"]["hard"][0])
  assert "| baseline | 1 | 20.00 ± 0.00 | 30.00 ± 0.00 | 20.00 ± 0.00 | 10.00 ± 0.00 | — | — |" \
      in seed_summary.markdown_table(summary)


def test_one_hard_class_list_per_run_is_required():
  with pytest.raises(ValueError, match="one hard-class list per run"):
    seed_summary.summarize([{}, {}], ["baseline"], hard_classes=[[1]])


def test_paired_differences_per_seed_with_gaps_where_a_row_is_missing():
  runs = [{"sdnn": _record(0.30, []), "baseline_equal_steps": _record(0.25, []),
           "split_only": _record(0.1, [])},
          {"sdnn": _record(0.20, []), "baseline_equal_steps": _record(0.26, [])},
          {"baseline_equal_steps": _record(0.27, [])}]
  differences = seed_summary.paired_differences(runs)
  # Only pairs some run finished; a run missing either row gives None.
  assert list(differences) == [("sdnn", "baseline_equal_steps")]
  np.testing.assert_allclose(differences[("sdnn", "baseline_equal_steps")][:2], [0.05, -0.06])
  assert differences[("sdnn", "baseline_equal_steps")][2] is None
  text = seed_summary.format_differences(differences, [0, 1, 2])
  assert "sdnn − baseline_equal_steps: +5.00, -6.00, —" in text
