"""The converged evidence as pictures, drawn from the committed result files alone.

Readers would rather look at a forest plot than read 34 intervals. This module reads
the result files the evidence scripts committed under `bench/` (the summaries
`bench/*.json` and the runs' folders `bench/runs/`) and draws three PNGs, each
written atomically:

  converged_gap_differences.png: the forest plot. Every paired test GAP@20
    difference of the converged studies, the mean over seeds with its 95% paired
    bootstrap interval (and each seed's difference as a dot), grouped by model
    family: SDNN and its two halves, ASL, the merge rule, the class selections.
  converged_test_gap.png: each converged row's test GAP@20, mean ± standard
    deviation over seeds.
  theta_vs_frequency.png: θ of every class against the positives the θ window saw,
    and the baseline's test AP against the same, with θ's selection marked.

Nothing is trained or scored: a missing or changed result file is an error naming it.
matplotlib is not a dependency of the package (the `plot` extra installs it).

  make figures   # or: python -m yt8m_sdnn.experiments.figures --output_dir=docs

About 20 s on two busy CPU cores, most of it importing the package (and TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Sequence

import numpy as np

from yt8m_sdnn import artifacts
from yt8m_sdnn.experiments import plot, rank_statistics

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench")

FOREST_FILE = "converged_gap_differences.png"
TEST_GAP_FILE = "converged_test_gap.png"
THETA_FILE = "theta_vs_frequency.png"
FIGURE_FILES = (FOREST_FILE, TEST_GAP_FILE, THETA_FILE)

# The θ run with the per-class sums (positives seen) in its window, and its baseline row.
THETA_RUN = os.path.join("runs", "converged_moe_reg", "run-1")

# What a row of the forest plot isolates; one colour each.
KINDS = {
    "method": ("SDNN (split + eq. 12 copies + eq. 11)", "tab:red"),
    "ablation": ("one half of SDNN", "lightcoral"),
    "loss": ("ASL instead of cross-entropy", "tab:blue"),
    "merge": ("odds_sum merge rule (beyond the paper)", "tab:purple"),
    "selection": ("SDNN on other classes (beyond the paper)", "tab:orange"),
    "control": ("random classes at null_normalized's frequencies (control)", "grey"),
}


@dataclasses.dataclass(frozen=True)
class Difference:
  """One paired test GAP difference over seeds, in GAP points.

  Attributes:
    label: what is subtracted from what, as the evidence pages name it.
    kind: a key of `KINDS`.
    mean: the mean over seeds.
    interval: the 95% paired bootstrap interval of the mean.
    per_seed: each seed's difference.
    source: the result file it comes from, relative to `bench/`.
  """
  label: str
  kind: str
  mean: float
  interval: tuple[float, float]
  per_seed: tuple[float, ...]
  source: str


@dataclasses.dataclass(frozen=True)
class Family:
  """The forest plot's rows of one model family (one panel)."""
  title: str
  rows: tuple[Difference, ...]


def _read(bench_dir: str, name: str) -> dict[str, Any]:
  path = os.path.join(bench_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: a committed result file the figures are drawn from is "
                            "missing (see docs/evidence/ for the command that writes it)")
  return artifacts.read_json(path)


def _lookup(payload: dict[str, Any], keys: Sequence[str], source: str) -> dict[str, Any]:
  value = payload
  for key in keys:
    if not isinstance(value, dict) or key not in value:
      raise KeyError(f"{source}: expected the key path {list(keys)}; {key!r} is missing")
    value = value[key]
  return value


def _difference(payload: dict[str, Any], keys: Sequence[str], label: str, kind: str,
                source: str) -> Difference:
  """A `Difference` from a paired summary {mean, mean_interval, per_seed} (fractions)."""
  paired = _lookup(payload, keys, source)
  low, high = paired["mean_interval"]
  return Difference(label=label, kind=kind, mean=100 * paired["mean"],
                    interval=(100 * low, 100 * high),
                    per_seed=tuple(100 * seed["difference"] for seed in paired["per_seed"]),
                    source=source)


# (label, kind, key path) of each row, per result file; labels as the evidence pages.
_ABLATIONS = (
    ("{S} − {B}", "method", ("paired_gap_differences", "sdnn - baseline")),
    ("split only − {B}", "ablation", ("paired_gap_differences", "split_only - baseline")),
    ("augment only − {B}", "ablation", ("paired_gap_differences", "augment_only - baseline")),
    ("{B} + ASL − {B}", "loss", ("paired_gap_differences", "baseline:asymmetric - baseline")),
    ("{S} + ASL − {B} + ASL", "method",
     ("paired_gap_differences", "sdnn:asymmetric - baseline:asymmetric")),
)
_HALVES = ("split_only - baseline", "augment_only - baseline")
# The selections SDNN was also trained on; `paper` (θ from scratch) is SDNN's own row.
_SELECTIONS = (
    ("null_normalized", "selection"), ("frequency_residual", "selection"),
    ("low_val_ap", "selection"), ("ap_gap", "selection"), ("paper@late", "selection"),
    ("null_normalized@late", "selection"), ("matched_random", "control"),
)
_SELECTION_LABELS = {
    "null_normalized": "{S} on null_normalized",
    "frequency_residual": "{S} on frequency_residual",
    "low_val_ap": "{S} on oracle low_val_ap",
    "ap_gap": "{S} on oracle ap_gap",
    "paper@late": "{S} on θ measured late",
    "null_normalized@late": "{S} on null_normalized late",
    "matched_random": "{S} on matched random",
}


def _ablation_rows(payload, source, names, only=None) -> list[Difference]:
  return [_difference(payload, keys, label.format(**names), kind, source)
          for label, kind, keys in _ABLATIONS if only is None or keys[-1] in only]


def _selection_rows(payload, source, names, suffix="") -> list[Difference]:
  rows = []
  for variant, kind in _SELECTIONS:
    if variant in payload["variants"]:
      rows.append(_difference(payload, ("variants", variant, "paired"),
                              _SELECTION_LABELS[variant].format(**names) + " − "
                              + names["B"] + suffix, kind, source))
  return rows


def forest_families(bench_dir: str = BENCH_DIR) -> list[Family]:
  """Every converged paired GAP difference with an interval in the committed files.

  Args:
    bench_dir: the folder holding the result files (default the checkout's `bench/`).

  Returns:
    One `Family` per model family and recipe, rows in the evidence pages' order.

  Raises:
    FileNotFoundError, KeyError: a result file or one of its keys is missing.
  """
  lr = {"B": "LR", "S": "SLR"}
  moe = {"B": "MoE", "S": "SMoE"}
  logistic = _read(bench_dir, "converged_logistic.json")
  merge_lr = _read(bench_dir, "subclass_merge_logistic.json")
  lr_rows = _ablation_rows(logistic, "converged_logistic.json", lr)
  lr_rows += [
      _difference(merge_lr, ("rows", "sdnn", "odds_sum", "test_gap_minus_baseline"),
                  "SLR odds_sum − LR", "merge", "subclass_merge_logistic.json"),
      _difference(merge_lr, ("rows", "split_only", "odds_sum", "test_gap_minus_baseline"),
                  "split only odds_sum − LR", "merge", "subclass_merge_logistic.json"),
  ]
  lr_rows += _selection_rows(_read(bench_dir, "scores_logistic.json"), "scores_logistic.json",
                             lr)

  untuned = _read(bench_dir, "converged_moe.json")
  moe_rows = _ablation_rows(untuned, "converged_moe.json", moe)
  # Their baselines were trained again (their models were not kept): * once, ** twice.
  moe_rows += _selection_rows(_read(bench_dir, "scores_moe.json"), "scores_moe.json", moe, "*")
  moe_rows += _selection_rows(_read(bench_dir, "scores_moe_second_wave.json"),
                              "scores_moe_second_wave.json", moe, "**")

  tuned = _read(bench_dir, "converged_moe_reg.json")
  at_baseline = _read(bench_dir, "converged_moe_tuned_ablations.json")
  merge_moe = _read(bench_dir, "subclass_merge_moe.json")
  tuned_rows = _ablation_rows(tuned, "converged_moe_reg.json", moe)
  # The protocol trains the ablations with SDNN's λ (0.05); also measured at the MoE's.
  tuned_rows[1:3] = [dataclasses.replace(row, label=row.label + " (λ 0.05)")
                     for row in tuned_rows[1:3]]
  tuned_rows[3:3] = [dataclasses.replace(row, label=row.label + " (λ 0.2)")
                     for row in _ablation_rows(at_baseline, "converged_moe_tuned_ablations.json",
                                               moe, only=_HALVES)]
  tuned_rows.append(_difference(
      merge_moe, ("rows", "sdnn", "odds_sum", "test_gap_minus_baseline"),
      "SMoE odds_sum − MoE", "merge", "subclass_merge_moe.json"))

  return [
      Family("Logistic regression (Adam 0.03, no weight decay)", tuple(lr_rows)),
      Family("Mixture of experts, first grid (Adam 0.03, no weight decay)", tuple(moe_rows)),
      Family("Mixture of experts, weight decay tuned per side (AdamW λ: MoE 0.2, SMoE 0.05)",
             tuple(tuned_rows)),
  ]


@dataclasses.dataclass(frozen=True)
class RowGap:
  """A converged row's test GAP@20 over seeds, in %."""
  label: str
  kind: str
  mean: float
  std: float
  num_seeds: int


# (row key, label, kind) of the converged tables.
_GAP_ROWS = (
    ("baseline", "{B}", "baseline"), ("sdnn", "{S} (SDNN)", "method"),
    ("split_only", "split only{L}", "ablation"), ("augment_only", "augment only{L}", "ablation"),
    ("baseline:asymmetric", "{B} + ASL", "loss"), ("sdnn:asymmetric", "{S} + ASL", "method"),
)


def row_gap_families(bench_dir: str = BENCH_DIR) -> list[tuple[str, list[RowGap]]]:
  """Each converged table's rows: (title, rows), GAP@20 mean ± std over seeds in %."""
  families = []
  for name, title, names in (
      ("converged_logistic.json", "Logistic regression (Adam 0.03, no weight decay)",
       {"B": "LR", "S": "SLR"}),
      ("converged_moe.json", "Mixture of experts, first grid (Adam 0.03, no weight decay)",
       {"B": "MoE", "S": "SMoE"}),
      ("converged_moe_reg.json", "Mixture of experts, weight decay tuned per side "
       "(MoE, MoE + ASL λ 0.2; SMoE and its rows λ 0.05)", {"B": "MoE", "S": "SMoE"})):
    payload = _read(bench_dir, name)
    rows = []
    for key, label, kind in _GAP_ROWS:
      mean, std, count = _lookup(payload, ("rows", key, "gap"), name)
      rows.append(RowGap(label.format(**names, L=", λ 0.05" if name == "converged_moe_reg.json"
                                      else ""), kind, 100 * mean, 100 * std, int(count)))
      if name == "converged_moe_reg.json" and key == "augment_only":
        ablations = _read(bench_dir, "converged_moe_tuned_ablations.json")
        for extra, extra_label in (("split_only", "split only, λ 0.2"),
                                   ("augment_only", "augment only, λ 0.2")):
          mean, std, count = _lookup(ablations, ("rows", extra, "gap"),
                                     "converged_moe_tuned_ablations.json")
          rows.append(RowGap(extra_label, "ablation", 100 * mean, 100 * std, int(count)))
    families.append((title, rows))
  return families


def theta_and_frequency(bench_dir: str = BENCH_DIR) -> dict[str, Any]:
  """θ, positives seen and the baseline's test AP per class, from `THETA_RUN`.

  The θ stage's last window records the per-class sums it was computed from
  (`neglection.scores.SUM_KEYS`), among them `positive_counts`: the positives of each
  class in the window's minibatches, i.e. its training frequency times the videos seen.

  Returns:
    theta, positives (float arrays over classes, NaN where undefined), test_ap (the
    run's baseline row, NaN for classes without test positives), selected (class ids),
    videos_seen, and the names of the files read.
  """
  neglection_name = os.path.join(THETA_RUN, "neglection", "neglection.json")
  baseline_name = os.path.join(THETA_RUN, "baseline", "stage_result.json")
  neglection = _read(bench_dir, neglection_name)
  window = neglection["history"][-1]
  if "positive_counts" not in window:
    raise KeyError(f"{neglection_name}: its last window has no 'positive_counts'")
  return {
      "theta": rank_statistics.as_floats(window["theta"]),
      "positives": rank_statistics.as_floats(window["positive_counts"]),
      "test_ap": rank_statistics.as_floats(_read(bench_dir, baseline_name)["class_ap"]),
      "selected": np.asarray(neglection["selected"], np.int64),
      "videos_seen": int(window["num_minibatches"]) * int(neglection["batch_size"]),
      "num_iterations": int(window["num_iterations"]),
      "model": neglection.get("model"),
      "sources": (neglection_name, baseline_name),
  }


def _figure_module():
  try:
    # pylint: disable=import-outside-toplevel
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
  except ImportError as error:
    raise ImportError(plot.MATPLOTLIB_HINT) from error
  return Figure, FigureCanvasAgg, Line2D


def _save(figure, canvas_class, path: str) -> None:
  """Writes `figure` to `path` through the Agg canvas, atomically and reproducibly."""
  canvas_class(figure)  # Agg, whatever backend pyplot would pick; no pyplot state
  with artifacts.atomic_write_path(path, suffix=".png") as temporary:
    # No "Software" entry: the same result files give the same bytes on every version.
    figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None})


def _signed(value: float) -> str:
  return f"{value:+.2f}".replace("-", "−")


def draw_forest(families: Sequence[Family], path: str) -> None:
  """The forest plot of `forest_families` to `path` (PNG)."""
  Figure, canvas_class, Line2D = _figure_module()  # pylint: disable=invalid-name
  heights = [len(family.rows) + 1.2 for family in families]
  figure = Figure(figsize=(10, 0.25 * sum(heights) + 2.2), layout="constrained")
  axes = figure.subplots(len(families), 1, sharex=True, gridspec_kw={"height_ratios": heights})
  low = min(min(row.interval[0], *row.per_seed) for family in families for row in family.rows)
  high = max(max(row.interval[1], *row.per_seed) for family in families for row in family.rows)
  for ax, family in zip(axes, families):
    positions = np.arange(len(family.rows))[::-1]
    for y, row in zip(positions, family.rows):
      colour = KINDS[row.kind][1]
      ax.plot(row.interval, (y, y), color=colour, linewidth=2.4, solid_capstyle="butt")
      ax.scatter(row.per_seed, np.full(len(row.per_seed), y), s=9, color="black", alpha=0.45,
                 zorder=3, linewidths=0)
      ax.scatter([row.mean], [y], s=42, color=colour, edgecolors="black", linewidths=0.6,
                 zorder=4, marker="D" if row.kind == "method" else "o")
      seeds = f"  ({len(row.per_seed)} seeds)" if len(row.per_seed) != 3 else ""
      ax.annotate(f"{_signed(row.mean)} [{_signed(row.interval[0])}, "
                  f"{_signed(row.interval[1])}]{seeds}", xy=(1.01, y),
                  xycoords=("axes fraction", "data"), va="center", fontsize=8.5,
                  family="monospace")
    ax.axvline(0.0, color="black", linewidth=0.9)
    ax.set_yticks(positions, [row.label for row in family.rows], fontsize=9)
    ax.set_ylim(-0.7, len(family.rows) - 0.3)
    ax.set_title(family.title, fontsize=10, loc="left", fontweight="bold")
    ax.grid(axis="x", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
  axes[-1].set_xlim(low - 0.15, high + 0.15)
  axes[-1].set_xlabel("paired test GAP@20 difference, points (mean over seeds, 95% bootstrap "
                      "interval over test videos; dots: each seed)")
  handles = [Line2D([], [], color=colour, marker="D" if kind == "method" else "o",
                    linewidth=2.4, markeredgecolor="black", markeredgewidth=0.6, label=label)
             for kind, (label, colour) in KINDS.items()]
  figure.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8.5,
                frameon=False, title="3 seeds unless said; * and **: against the baselines "
                "trained again once and twice (their models were not kept)",
                title_fontsize=8.5)
  figure.suptitle("Trained to their best validation epoch, SDNN lowers test GAP and ASL "
                  "raises it\n(real YT8M shards: 20,305 training videos, 3,862 classes; "
                  "left of 0: below the baseline)", fontsize=10.5)
  _save(figure, canvas_class, path)


def draw_test_gap(families: Sequence[tuple[str, Sequence[RowGap]]], path: str) -> None:
  """Each converged row's test GAP@20, mean ± std over seeds, to `path` (PNG)."""
  Figure, canvas_class, _ = _figure_module()  # pylint: disable=invalid-name
  colours = {"baseline": "black", **{kind: colour for kind, (_, colour) in KINDS.items()}}
  heights = [len(rows) + 1.2 for _, rows in families]
  figure = Figure(figsize=(9.5, 0.3 * sum(heights) + 1.0), layout="constrained")
  axes = figure.subplots(len(families), 1, sharex=True, gridspec_kw={"height_ratios": heights})
  for ax, (title, rows) in zip(axes, families):
    positions = np.arange(len(rows))[::-1]
    baseline = rows[0].mean
    ax.axvline(baseline, color="black", linewidth=0.8, linestyle="--")
    for y, row in zip(positions, rows):
      ax.errorbar([row.mean], [y], xerr=[row.std], fmt="o", color=colours[row.kind],
                  markeredgecolor="black", markeredgewidth=0.5, markersize=7, capsize=3)
      ax.annotate(f"{row.mean:.2f} ± {row.std:.2f}", xy=(1.01, y),
                  xycoords=("axes fraction", "data"), va="center", fontsize=8.5,
                  family="monospace")
    ax.set_yticks(positions, [row.label for row in rows], fontsize=9)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_title(title, fontsize=10, loc="left", fontweight="bold")
    ax.grid(axis="x", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
  axes[-1].set_xlabel("test GAP@20, % (mean ± standard deviation over 3 seeds; dashed: the "
                      "family's baseline)")
  figure.suptitle("Converged rows on the real shards: each trained to its best validation "
                  "epoch, scored once on the test shards", fontsize=10.5)
  _save(figure, canvas_class, path)


def draw_theta_vs_frequency(data: dict[str, Any], path: str) -> None:
  """θ and the baseline's test AP against the positives θ's window saw, to `path` (PNG)."""
  Figure, canvas_class, _ = _figure_module()  # pylint: disable=invalid-name
  theta, positives, test_ap = data["theta"], data["positives"], data["test_ap"]
  selected = np.zeros(theta.size, bool)
  selected[data["selected"]] = True
  scored = np.isfinite(theta) & (positives > 0)
  rho_theta = rank_statistics.spearman_rank_correlation(theta[scored], positives[scored])
  with_ap = scored & np.isfinite(test_ap)
  rho_ap = rank_statistics.spearman_rank_correlation(test_ap[with_ap], positives[with_ap])

  figure = Figure(figsize=(12, 5.4), layout="constrained")
  left, right = figure.subplots(1, 2)
  for ax, values, shown in ((left, theta, scored), (right, test_ap, with_ap)):
    ax.scatter(positives[shown & ~selected], values[shown & ~selected], s=7, color="0.55",
               alpha=0.6, linewidths=0, label="not selected")
    ax.scatter(positives[shown & selected], values[shown & selected], s=16, marker="x",
               color="tab:red", linewidths=0.9,
               label=f"selected: the {int(selected.sum())} largest θ (10%)")
    ax.set_xscale("log")
    ax.set_xlabel(f"positives of the class in θ's window ({data['num_iterations']} iterations "
                  f"of {data['videos_seen'] // data['num_iterations']} videos)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(color="0.92", linewidth=0.6)
    ax.set_axisbelow(True)
  left.set_ylabel("θ of the window (eq. 9)")
  left.set_title(f"θ rises with the class's frequency:\nSpearman ρ = {rho_theta:.2f} over "
                 f"{int(scored.sum()):,} classes with a positive in the window", fontsize=10)
  right.set_ylabel("test AP of the converged baseline")
  right.set_title(f"so θ selects frequent, well-learned classes:\nρ(AP, frequency) = "
                  f"{rho_ap:.2f} over {int(with_ap.sum()):,} classes with test positives",
                  fontsize=10)
  right.legend(loc="lower right", fontsize=9)
  figure.suptitle("θ on the real shards does not point at badly learned classes: it follows "
                  "frequency (paper's θ, mixture of experts from scratch, one seed)",
                  fontsize=10.5)
  figure.supxlabel(f"θ and positives: bench/{data['sources'][0]}; "
                   f"AP: bench/{data['sources'][1]}", fontsize=8.5, color="0.3")
  _save(figure, canvas_class, path)


def draw_all(output_dir: str, bench_dir: str = BENCH_DIR) -> list[str]:
  """Draws every figure of the module docstring into `output_dir`; returns their paths.

  Raises:
    ImportError: matplotlib is not installed (the message says how to install it).
    FileNotFoundError, KeyError: a committed result file or one of its keys is missing.
  """
  # Read everything first, so a missing file leaves the old PNGs as they were.
  forest, gaps, theta = (forest_families(bench_dir), row_gap_families(bench_dir),
                         theta_and_frequency(bench_dir))
  paths = [os.path.join(output_dir, name) for name in FIGURE_FILES]
  draw_forest(forest, paths[0])
  draw_test_gap(gaps, paths[1])
  draw_theta_vs_frequency(theta, paths[2])
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m yt8m_sdnn.experiments.figures",
                                   description=__doc__.split("\n", 1)[0])
  parser.add_argument("--output_dir", default="docs", help="Receives the PNGs (default docs).")
  parser.add_argument("--bench_dir", default=BENCH_DIR,
                      help="The committed result files (default the checkout's bench/).")
  args = parser.parse_args(argv)
  try:
    for path in draw_all(args.output_dir, args.bench_dir):
      print(f"wrote {path}")
  except (ImportError, OSError, KeyError, artifacts.ArtifactError) as error:
    print(f"figures: error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
