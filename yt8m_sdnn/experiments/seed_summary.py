"""Mean ± spread of pipeline rows over several seeds, from what the runs left on disk.

A comparison over seeds is only as honest as its bookkeeping: a row that finished for
two seeds out of three must say so, not silently average two values or fail. This
reads each run's per-stage `stage_result.json` (so a run that was stopped still
counts for the rows it finished) and reports, per row, the mean, the population
standard deviation and the number of seeds behind them. Rows of one seed share its
data, θ and plan, so `paired_differences` gives each seed's row-minus-row difference:
with `--deterministic` runs that difference is the methods' alone.
"""

from __future__ import annotations

import os

import numpy as np

from yt8m_sdnn import artifacts
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.experiments import measure

SUMMARY_KEYS = pipeline.METRIC_KEYS + ("hard", "split", "train_steps", "examples_per_second")


def load_run(run_dir: str, stages: list[str]) -> dict:
  """The rows of one pipeline run that finished, keyed like `comparison.json`.

  Adds `selected` (the split classes) when the run's neglection stage finished.
  Stages without a `stage_result.json` are absent: they did not finish.
  """
  run: dict = {}
  for stage in stages:
    path = os.path.join(pipeline.stage_dir(run_dir, stage), pipeline.STAGE_RESULT_FILE)
    if os.path.exists(path):
      run[stage] = artifacts.read_json(path)
  neglection = os.path.join(run_dir, "neglection", measure.NEGLECTION_FILE)
  if os.path.exists(neglection):
    run["selected"] = [int(c) for c in artifacts.read_json(neglection)["selected"]]
  return run


def _mean_ap(class_ap: list, classes: list[int]) -> float:
  """Mean AP over `classes`, skipping classes without positives (AP undefined)."""
  picked = [class_ap[c] for c in classes if class_ap[c] is not None]
  return float(np.mean(picked)) if picked else float("nan")


def summarize(runs: list[dict], stages: list[str],
              hard_classes: list[list[int]] | None = None) -> dict:
  """Per row: {key: (mean, std, number of seeds)} over the runs where the row finished.

  Args:
    runs: one comparison per seed (`load_run` or `pipeline.run`'s return value).
    stages: the rows to report, in order; rows no run finished are left out.
    hard_classes: per run, classes whose mean AP is reported as `hard` (the synthetic
      generator's planted classes); None or empty lists give NaN.
  """
  hard_classes = hard_classes or [[] for _ in runs]
  if len(hard_classes) != len(runs):
    raise ValueError(f"Expected one hard-class list per run ({len(runs)}). "
                     f"Received: {len(hard_classes)}")
  summary = {}
  for stage in stages:
    finished = [(run, hard) for run, hard in zip(runs, hard_classes) if stage in run]
    if not finished:
      continue
    cells = {}
    for key in SUMMARY_KEYS:
      values = []
      for run, hard in finished:
        record = run[stage]
        if key == "hard":
          values.append(_mean_ap(record["class_ap"], hard))
        elif key == "split":
          values.append(_mean_ap(record["class_ap"], run.get("selected", [])))
        else:
          values.append(float(record[key]))
      cells[key] = (float(np.mean(values)), float(np.std(values)), len(values))
    summary[stage] = cells
  return summary


def markdown_table(summary: dict, top_k: int = 20) -> str:
  """The summary as a Markdown table in %, with the number of seeds per row (GAP@`top_k`)."""
  lines = [f"| row | seeds | GAP@{top_k} | Hit@1 | PERR | mAP | AP hard classes | AP split classes "
           "| steps | examples/s |",
           "|---|---|---|---|---|---|---|---|---|---|"]

  def percent(cells, key):
    mean, std, _ = cells[key]
    return "—" if np.isnan(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"

  for stage, cells in summary.items():
    lines.append(
        f"| {stage} | {cells['gap'][2]} | {percent(cells, 'gap')} | "
        f"{percent(cells, 'hit_at_one')} | {percent(cells, 'perr')} | "
        f"{percent(cells, 'map')} | {percent(cells, 'hard')} | {percent(cells, 'split')} | "
        f"{cells['train_steps'][0]:.0f} | {cells['examples_per_second'][0]:.0f} |")
  return "\n".join(lines)


# Row pairs whose per-seed difference attributes SDNN's effect to its parts: the whole
# method at equal steps, the split at equal steps (with and without the copies), the
# copies at equal steps, the losses against cross-entropy, and SDNN on top of ASL.
ATTRIBUTION_PAIRS = (
    ("sdnn", "baseline_equal_steps"), ("sdnn", "augment_only"), ("split_only", "baseline"),
    ("augment_only", "baseline_equal_steps"),
    ("baseline_equal_steps:focal", "baseline_equal_steps"),
    ("baseline_equal_steps:asymmetric", "baseline_equal_steps"),
    ("sdnn:asymmetric", "baseline_equal_steps:asymmetric"))


def paired_differences(runs: list[dict],
                       pairs=ATTRIBUTION_PAIRS) -> dict[tuple[str, str], list[float | None]]:
  """Per pair (a, b) present in some run: GAP of a minus b for each run, in run order.

  A run that did not finish both rows gives None in its place; pairs no run finished
  are left out.
  """
  differences = {}
  for first, second in pairs:
    values = [float(run[first]["gap"]) - float(run[second]["gap"])
              if first in run and second in run else None for run in runs]
    if any(value is not None for value in values):
      differences[(first, second)] = values
  return differences


def format_differences(differences: dict, seeds) -> str:
  """The paired differences as lines `a − b: +x.xx, -y.yy, —` (GAP points; — : not run)."""
  lines = [f"paired differences in GAP points, seeds {', '.join(str(s) for s in seeds)}:"]
  for (first, second), values in differences.items():
    cells = ", ".join("—" if value is None else f"{100 * value:+.2f}" for value in values)
    lines.append(f"  {first} − {second}: {cells}")
  return "\n".join(lines)
