"""The GPU run's script (`bench.device_run`) passes its smoke run on Keras + JAX, on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import device_run
from conftest import ROOT, binary_env
from yt8m_sdnn import training


def test_cnn_recipe_is_the_projects_early_stopped_recipe():
  recipe = training.default_settings("cnn", early_stopped=True)
  assert recipe["optimizer"] == "adam" and recipe["learning_rate_decay"] == 1.0
  assert {key: recipe[key] for key in device_run.CNN_RECIPE} == device_run.CNN_RECIPE


def _smoke(tmp_path, *flags: str) -> dict:
  """`device_run --smoke` as on the GPU machine: Keras on JAX, `import tensorflow` fails."""
  pytest.importorskip("jax")
  (tmp_path / "site").mkdir()
  (tmp_path / "site" / "sitecustomize.py").write_text(
      "import sys\nsys.modules['tensorflow'] = None  # import tensorflow: ImportError\n")
  output = tmp_path / "device_results.json"
  result = subprocess.run(
      [sys.executable, "-m", "bench.device_run", "--smoke", f"--output={output}", *flags],
      cwd=ROOT, env=binary_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                               PYTHONPATH=f"{tmp_path / 'site'}:{ROOT}"),
      capture_output=True, text=True, timeout=400)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(output.read_text())


def test_smoke_run_on_jax_without_tensorflow_writes_every_part(tmp_path):
  results = _smoke(tmp_path)
  assert results["environment"]["backend"] == "jax"
  measured = [row for row in results["throughput"] if "examples_per_second" in row]
  assert {row["model"] for row in measured} >= {"logistic", "moe", "cnn", "subclass_cnn"}
  runs = results["converged"]["seeds"]["0"]
  assert set(runs) == {"baseline", "theta", "sdnn", "augment_only", "split_only"}
  assert len(runs["theta"]["selected"]) == 3  # 10% of 30 classes
  for row in ("baseline", "sdnn", "augment_only", "split_only"):
    assert 0.0 <= runs[row]["test"]["gap"] <= 1.0 and runs[row]["best_epoch"] >= 1
  for row in ("sdnn", "split_only"):  # rescored with the summed odds, on JAX
    by_merge = runs[row]["by_merge"]["odds_sum"]
    assert 0.0 <= by_merge["val_gap"] <= 1.0 and 0.0 <= by_merge["test"]["gap"] <= 1.0
    assert by_merge["test"]["gap"] != runs[row]["test"]["gap"]
  assert "by_merge" not in runs["augment_only"]


def test_row_share_cuts_every_row_and_leaves_the_next_rows_their_turn(tmp_path):
  """A row out of its share stops ('budget'), and the rows after it still train and score."""
  results = _smoke(tmp_path, "--row_share=1e-9", "--throughput_share=0")
  assert results["converged"]["row_share"] == 1e-9
  runs = results["converged"]["seeds"]["0"]
  assert set(runs) == {"baseline", "theta", "sdnn", "augment_only", "split_only"}
  for row in ("baseline", "sdnn", "augment_only", "split_only"):
    # The smoke's cap is 3 epochs: a row that reached it was not cut by its share.
    assert runs[row]["stopped"] == "budget" and len(runs[row]["validation_curve"]) < 3
    assert 0.0 <= runs[row]["test"]["gap"] <= 1.0
  assert all("skipped" in row for row in results["throughput"])
