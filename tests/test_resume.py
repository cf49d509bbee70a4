"""A training process killed with SIGKILL mid-epoch resumes and ends like an unbroken run."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, binary_env, kill_when_backed_up
from yt8m_sdnn.data import synthetic


def train_command(data_dir, train_dir):
  return [sys.executable, "-m", "bin.yt8m_train", f"--train_data={data_dir}/train",
          f"--train_dir={train_dir}", "--model=logistic", "--num_classes=8", "--batch_size=16",
          "--num_epochs=3", "--backup_steps=2", "--seed=3", "--deterministic",
          "--learning_rate=0.01"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("resume_data")
  synthetic.generate(synthetic.SynthConfig(output_dir=str(directory), num_classes=8,
                                           num_train=480, num_validate=16, num_shards=2,
                                           num_hard_classes=1))
  return directory


@pytest.fixture(scope="module")
def reference_model(data_dir, tmp_path_factory):
  """One uninterrupted deterministic run of `train_command`, shared by the tests below."""
  train_dir = tmp_path_factory.mktemp("resume_reference")
  subprocess.run(train_command(data_dir, train_dir), cwd=ROOT, env=binary_env(), check=True,
                 capture_output=True, timeout=300)
  return keras.saving.load_model(train_dir / "model.keras")


def test_killed_training_resumes_with_same_steps(data_dir, reference_model, tmp_path):
  resumed_dir = tmp_path / "resumed"
  # Kill once a mid-epoch backup of the second epoch exists (30 steps an epoch).
  killed_at = kill_when_backed_up(
      train_command(data_dir, resumed_dir), resumed_dir / "backup" / "backup_state.json",
      lambda state: state["epoch"] == 1 and state["step"] >= 4, "a mid-epoch backup")
  assert not (resumed_dir / "model.keras").exists()

  result = subprocess.run(train_command(data_dir, resumed_dir), cwd=ROOT, env=binary_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {resumed_dir}/backup: epoch {killed_at['epoch']}" in result.stderr
  # The report counts the whole run, the steps before the kill included (3 x 30).
  assert "trained 90 steps" in result.stderr
  assert not (resumed_dir / "backup").exists()

  resumed = keras.saving.load_model(resumed_dir / "model.keras")
  assert len(resumed.get_weights()) == len(reference_model.get_weights())
  for expected, actual in zip(reference_model.get_weights(), resumed.get_weights()):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_deterministic_runs_give_identical_models(data_dir, reference_model, tmp_path):
  subprocess.run(train_command(data_dir, tmp_path / "second"), cwd=ROOT, env=binary_env(),
                 check=True, capture_output=True, timeout=300)
  second = keras.saving.load_model(tmp_path / "second" / "model.keras")
  assert len(second.get_weights()) == len(reference_model.get_weights())
  for a, b in zip(reference_model.get_weights(), second.get_weights()):
    np.testing.assert_array_equal(a, b)


def neglection_command(data_dir, train_dir):
  return [sys.executable, "-m", "bin.yt8m_neglection", f"--train_data={data_dir}/train",
          f"--train_dir={train_dir}", "--model=logistic", "--num_classes=8", "--batch_size=16",
          "--neglection_steps=40", "--tau=6", "--backup_steps=2", "--top_k_classes=3",
          "--seed=3", "--deterministic", "--learning_rate=0.01"]


def test_killed_theta_run_resumes_with_the_same_theta(data_dir, tmp_path):
  reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
  subprocess.run(neglection_command(data_dir, reference_dir), cwd=ROOT, env=binary_env(),
                 check=True, capture_output=True, timeout=300)

  def two_windows_closed_inside_a_third(state):
    windows = state.get("callbacks", {}).get("NeglectionMonitor", {}).get("history", [])
    return len(windows) >= 2 and state["step"] % 6 != 0

  # Kill after two θ windows have closed and inside a third (τ = 6, a backup every 2 steps).
  kill_when_backed_up(neglection_command(data_dir, resumed_dir),
                      resumed_dir / "backup" / "backup_state.json",
                      two_windows_closed_inside_a_third, "two closed θ windows")
  result = subprocess.run(neglection_command(data_dir, resumed_dir), cwd=ROOT, env=binary_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming from" in result.stderr
  expected = json.loads((reference_dir / "neglection.json").read_text())
  got = json.loads((resumed_dir / "neglection.json").read_text())
  assert got["selected"] == expected["selected"]
  assert [w["end_iteration"] for w in got["history"]] == [
      w["end_iteration"] for w in expected["history"]]  # 6 windows of 6, nothing lost
  assert got["theta"] == expected["theta"]
