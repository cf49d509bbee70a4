"""A Figure-1-style picture of θ against validation AP (optional: needs matplotlib).

The paper's Figure 1 plots θ_i per epoch next to each class's test accuracy. This
draws, from a `measure_neglection_evidence` payload (or its JSON):
  left: θ of every class per window, each line coloured by the class's final
    validation AP, with the median θ of the lowest, middle and highest AP tercile
    drawn thick (Figure 1 predicts the low-AP line on top; ties in AP are broken at
    random), planted hard classes dashed black;
  middle: Spearman ρ(θ, AP), ρ(θ, frequency) and the two frequency controls per
    window (solid) and for θ over iterations 1..p (dashed), with the ±95% band of
    unrelated rankings;
  right: final validation AP against the last window's θ, coloured by log10 of the
    class's training frequency; hard classes ringed red, the selection crossed.
matplotlib is not a dependency of the package: `pip install matplotlib`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from yt8m_sdnn import artifacts

MATPLOTLIB_HINT = ("plotting needs matplotlib, which is not installed: "
                   "pip install matplotlib (or the package's `plot` extra)")


def matplotlib_available() -> bool:
  """Whether matplotlib can be imported (checked before a long run, not after)."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def _floats(values) -> np.ndarray:
  return np.array([np.nan if value is None else value for value in values], np.float64)


def plot_neglection_evidence(payload: dict[str, Any], path: str, title: str | None = None) -> None:
  """Writes the three-panel PNG described in the module docstring to `path`, atomically.

  Args:
    payload: what `evidence.measure_neglection_evidence` returns (or its JSON,
      `TRAIN_DIR/neglection_report.json`).
    path: the PNG to write.
    title: first line of the figure title; default names the model and data sizes.

  Raises:
    ImportError: matplotlib is not installed (the message says how to install it).
    artifacts.ArtifactError: `path`'s folder cannot be written.

  Example:
    payload = artifacts.read_json("/tmp/theta/neglection_report.json")
    plot_neglection_evidence(payload, "/tmp/theta/theta_vs_ap.png")
  """
  try:
    # pylint: disable=import-outside-toplevel
    from matplotlib import cm, colormaps, colors, patheffects
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
  except ImportError as error:
    raise ImportError(MATPLOTLIB_HINT) from error

  history, report = payload["history"], payload["report"]
  iterations = np.array([window["end_iteration"] for window in history], np.float64)
  theta = np.stack([_floats(window["theta"]) for window in history], axis=1)  # (classes, windows)
  class_ap = _floats(payload["class_ap"])
  counts = np.asarray(payload["class_counts"], np.float64)
  hard = [int(c) for c in payload.get("hard_classes") or []]
  selected = [int(c) for c in payload.get("selected") or []]
  num_classes = class_ap.size

  # No pyplot: a bare Figure keeps no global state and needs no display backend.
  figure = Figure(figsize=(19, 6.4), layout="constrained")
  left, middle, right = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1, 1]})
  ap_colours = colormaps["RdYlGn"]
  class_ap_range = class_ap[np.isfinite(class_ap)]
  ap_norm = colors.Normalize(*((class_ap_range.min(), class_ap_range.max())
                               if class_ap_range.size else (0.0, 1.0)))

  # Left: θ per class over iterations.
  with_ap = np.isfinite(class_ap)
  segments = [np.column_stack([iterations, theta[c]]) for c in np.flatnonzero(with_ap)]
  lines = LineCollection(segments, colors=ap_colours(ap_norm(class_ap[with_ap])),
                         linewidths=0.6, alpha=min(0.6, 40.0 / max(num_classes, 1)))
  left.add_collection(lines)
  for c in hard:
    left.plot(iterations, theta[c], color="black", linestyle="--", linewidth=0.9,
              label="planted hard class" if c == hard[0] else None)
  outline = [patheffects.withStroke(linewidth=4.6, foreground="black")]
  # Ties in AP (e.g. many classes at 1.0) are broken at random: a tie-break by class id
  # would fill the low-AP third with the lowest ids, which are often the most frequent.
  candidates = np.flatnonzero(with_ap)
  tie_break = np.random.default_rng(0).permutation(candidates.size)
  ordered = candidates[np.lexsort((tie_break, class_ap[candidates]))]
  for name, colour, group in zip(("lowest", "middle", "highest"),
                                 ("tab:red", "gold", "tab:green"), np.array_split(ordered, 3)):
    if group.size:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(theta[group], axis=0)  # all-NaN windows stay NaN
      left.plot(iterations, median, color=colour, linewidth=3.2, path_effects=outline,
                label=f"median θ, {name} AP third (AP {class_ap[group].min():.2f}–"
                      f"{class_ap[group].max():.2f})")
  finite_theta = theta[np.isfinite(theta)]
  if finite_theta.size and finite_theta.min() > 0 and finite_theta.max() / finite_theta.min() > 20:
    left.set_yscale("log")
  left.autoscale_view()
  left.set_xlabel("training iteration (end of the θ window)")
  left.set_ylabel(f"θ over the last τ = {payload.get('tau')} iterations (eq. 9)")
  left.set_title("θ per class, coloured by final validation AP")
  left.legend(loc="upper right", fontsize=8)
  figure.colorbar(cm.ScalarMappable(norm=ap_norm, cmap=ap_colours), ax=left,
                  label="validation AP of the trained baseline")

  # Middle: rank correlations per window and cumulatively.
  series = (("rho_theta_ap", "ρ(θ, AP)", "tab:red"),
            ("rho_theta_frequency", "ρ(θ, frequency)", "tab:blue"),
            ("rho_theta_ap_given_frequency", "partial ρ(θ, AP), frequency fixed", "tab:purple"),
            ("rho_theta_ap_stratified", "ρ(θ, AP) within frequency terciles", "tab:orange"))
  for which, style, suffix in (("windows", "-", "window"), ("cumulative", "--", "iterations 1..p")):
    rows = report.get(which) or []
    if not rows:
      continue
    x = [row["end_iteration"] for row in rows]
    for key, label, colour in series:
      middle.plot(x, _floats([row[key] for row in rows]), style, color=colour,
                  marker="o" if which == "windows" else None, markersize=3,
                  label=f"{label} ({suffix})")
  band = _floats([row["null_band_95"] for row in report["windows"]])
  middle.fill_between(iterations, -band, band, color="grey", alpha=0.2,
                      label="95% range for unrelated rankings")
  middle.axhline(0.0, color="black", linewidth=0.8)
  middle.set_ylim(-1.05, 1.05)
  middle.set_xlabel("training iteration p")
  middle.set_ylabel("Spearman ρ over classes")
  middle.set_title("Figure 1 predicts ρ(θ, AP) < 0")
  middle.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, ncol=2)

  # Right: final AP against the last window's θ.
  final_theta = theta[:, -1]
  frequency = np.log10(counts + 1.0)
  points = right.scatter(final_theta, class_ap, c=frequency, cmap="viridis",
                         s=max(4.0, 400.0 / math.sqrt(max(num_classes, 1))), alpha=0.8,
                         linewidths=0)
  if hard:
    right.scatter(final_theta[hard], class_ap[hard], facecolors="none", edgecolors="red",
                  s=90, linewidths=1.4, label="planted hard class")
  if selected:
    right.scatter(final_theta[selected], class_ap[selected], marker="x", color="black",
                  s=18, linewidths=0.8, label=f"selected: top {len(selected)} by θ")
  if finite_theta.size and right.get_xlim()[0] > 0 and (
      np.nanmax(final_theta) / max(np.nanmin(final_theta), 1e-12) > 20):
    right.set_xscale("log")
  last = report["windows"][-1]
  right.set_title(f"ρ(θ, AP) = {_number(last['rho_theta_ap'])}, "
                  f"ρ(θ, frequency) = {_number(last['rho_theta_frequency'])}, "
                  f"partial = {_number(last['rho_theta_ap_given_frequency'])}")
  right.set_xlabel(f"θ of the last window (iterations to {int(iterations[-1])})")
  right.set_ylabel("validation AP of the trained baseline")
  right.legend(loc="upper right", fontsize=8)
  figure.colorbar(points, ax=right, label="log10(training positives + 1)")

  heading = title or (f"{payload.get('model')} baseline, {payload.get('num_train_videos')} "
                      f"training videos, {num_classes} classes, {payload.get('num_epochs')} "
                      f"epochs; AP on {payload.get('num_eval_videos')} videos "
                      f"(mean {_number(payload.get('mean_average_precision'))})")
  figure.suptitle(f"{heading}\nSpearman ρ(θ, AP) of the last window = "
                  f"{_number(last['rho_theta_ap'])} (negative supports Figure 1)")
  with artifacts.atomic_write_path(path, suffix=".png") as temporary:
    figure.savefig(temporary, format="png", dpi=110)


def _number(value) -> str:
  return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
