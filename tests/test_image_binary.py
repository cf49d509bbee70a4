"""bin/image_train.py end to end in subprocesses: flags, user errors, an .npz run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

from yt8m_sdnn import artifacts
from yt8m_sdnn.image import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-m", "bin.image_train", *flags], cwd=ROOT,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"),
      capture_output=True, text=True, timeout=300)


def test_help_has_a_flag_for_every_config_field_and_mixed_precision():
  result = _run("--helpfull")
  # --helpfull groups the flags by the module that defines them (absl exits 1).
  assert "yt8m_sdnn.cli.image_train:" in result.stdout, result.stderr[-2000:]
  for field in dataclasses.fields(training.ImageTrainConfig):
    assert f"--{field.name}" in result.stdout or f"--[no]{field.name}" in result.stdout, field
  for flag in ("--data_dir", "--numpy_data", "--output_dir", "--mixed_precision"):
    assert flag in result.stdout
  assert "<cifar10|cifar100|digits|svhn_cropped>" in result.stdout


def test_unknown_data_set_lists_the_valid_ones(tmp_path):
  result = _run("--dataset=mnist", f"--output_dir={tmp_path}")
  assert result.returncode == 1
  assert "value should be one of <cifar10|cifar100|digits|svhn_cropped>" in result.stderr


def test_unprepared_data_dir_is_one_line_naming_it(tmp_path):
  result = _run("--dataset=cifar10", f"--data_dir={tmp_path / 'tfds'}",
                f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert f"cifar10 is not prepared in {tmp_path / 'tfds'}" in result.stderr


def test_subclass_run_on_npz_arrays_writes_metrics_and_theta(tmp_path):
  rng = np.random.default_rng(0)
  y_train, y_test = np.arange(40) % 4, np.arange(8) % 4
  artifacts.write_npz(str(tmp_path / "images.npz"), {
      "x_train": rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8), "y_train": y_train,
      "x_test": rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8), "y_test": y_test})
  result = _run(f"--numpy_data={tmp_path / 'images.npz'}", "--dataset=cifar10",
                "--model=small_cnn", "--num_epochs=1", "--batch_size=16", "--subclass",
                "--neglection_epochs=2", "--top_fraction=0.25", "--mixed_precision=mixed_bfloat16",
                f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
  assert 0.0 <= metrics["ccr"] <= 1.0 and len(metrics["class_ccr"]) == 4
  # floor(0.25 · 4) = 1 class split: 5 units; its 10 images doubled.
  assert metrics["num_units"] == 5 and metrics["num_train_images"] == 50
  neglection = json.loads((tmp_path / "out" / "neglection.json").read_text())
  assert neglection["selected"] == metrics["selected"] and len(neglection["history"]) == 2
