"""A training process killed with SIGKILL mid-epoch resumes and ends like an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from yt8m_sdnn.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(data_dir, train_dir):
  return [sys.executable, "-m", "bin.yt8m_train", f"--train_data={data_dir}/train",
          f"--train_dir={train_dir}", "--model=logistic", "--num_classes=8", "--batch_size=16",
          "--num_epochs=3", "--backup_steps=2", "--seed=3", "--deterministic",
          "--learning_rate=0.01"]


def run_env():
  return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("resume_data")
  synthetic.generate(synthetic.SynthConfig(output_dir=str(directory), num_classes=8,
                                           num_train=480, num_validate=16, num_shards=2,
                                           num_hard_classes=1))
  return directory


def test_killed_training_resumes_with_same_steps(data_dir, tmp_path):
  reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
  subprocess.run(train_command(data_dir, reference_dir), cwd=ROOT, env=run_env(), check=True,
                 capture_output=True, timeout=300)

  process = subprocess.Popen(train_command(data_dir, resumed_dir), cwd=ROOT, env=run_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  state_path = resumed_dir / "backup" / "backup_state.json"
  deadline = time.time() + 240
  # Kill once a mid-epoch backup of the second epoch exists (30 steps an epoch).
  while time.time() < deadline:
    if state_path.exists():
      state = json.loads(state_path.read_text())
      if state["epoch"] == 1 and state["step"] >= 4:
        break
    if process.poll() is not None:
      pytest.fail("training ended before it could be killed")
    time.sleep(0.05)
  else:
    process.kill()
    pytest.fail("no mid-epoch backup appeared")
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (resumed_dir / "model.keras").exists()
  killed_at = json.loads(state_path.read_text())

  result = subprocess.run(train_command(data_dir, resumed_dir), cwd=ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {resumed_dir}/backup: epoch {killed_at['epoch']}" in result.stderr
  # The report counts the whole run, the steps before the kill included (3 x 30).
  assert "trained 90 steps" in result.stderr
  assert not (resumed_dir / "backup").exists()

  reference = keras.saving.load_model(reference_dir / "model.keras")
  resumed = keras.saving.load_model(resumed_dir / "model.keras")
  for expected, actual in zip(reference.get_weights(), resumed.get_weights()):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_deterministic_runs_give_identical_models(data_dir, tmp_path):
  for name in ("first", "second"):
    subprocess.run(train_command(data_dir, tmp_path / name), cwd=ROOT, env=run_env(), check=True,
                   capture_output=True, timeout=300)
  first = keras.saving.load_model(tmp_path / "first" / "model.keras")
  second = keras.saving.load_model(tmp_path / "second" / "model.keras")
  for a, b in zip(first.get_weights(), second.get_weights()):
    np.testing.assert_array_equal(a, b)


def neglection_command(data_dir, train_dir):
  return [sys.executable, "-m", "bin.yt8m_neglection", f"--train_data={data_dir}/train",
          f"--train_dir={train_dir}", "--model=logistic", "--num_classes=8", "--batch_size=16",
          "--neglection_steps=40", "--tau=6", "--backup_steps=2", "--top_k_classes=3",
          "--seed=3", "--deterministic", "--learning_rate=0.01"]


def test_killed_theta_run_resumes_with_the_same_theta(data_dir, tmp_path):
  reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
  subprocess.run(neglection_command(data_dir, reference_dir), cwd=ROOT, env=run_env(),
                 check=True, capture_output=True, timeout=300)
  process = subprocess.Popen(neglection_command(data_dir, resumed_dir), cwd=ROOT, env=run_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  state_path = resumed_dir / "backup" / "backup_state.json"
  deadline = time.time() + 240
  # Kill after two θ windows have closed and inside a third (τ = 6, a backup every 2 steps).
  while time.time() < deadline:
    if state_path.exists():
      state = json.loads(state_path.read_text())
      windows = state.get("callbacks", {}).get("NeglectionMonitor", {}).get("history", [])
      if len(windows) >= 2 and state["step"] % 6 != 0:
        break
    if process.poll() is not None:
      pytest.fail("the θ run ended before it could be killed")
    time.sleep(0.02)
  else:
    process.kill()
    pytest.fail("no backup with two closed windows appeared")
  process.send_signal(signal.SIGKILL)
  process.wait()
  result = subprocess.run(neglection_command(data_dir, resumed_dir), cwd=ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming from" in result.stderr
  expected = json.loads((reference_dir / "neglection.json").read_text())
  got = json.loads((resumed_dir / "neglection.json").read_text())
  assert got["selected"] == expected["selected"]
  assert [w["end_iteration"] for w in got["history"]] == [
      w["end_iteration"] for w in expected["history"]]  # 6 windows of 6, nothing lost
  assert got["theta"] == expected["theta"]
