"""A training process killed (SIGKILL) or stopped (SIGINT, SIGTERM) mid-epoch resumes and
ends like an unbroken run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

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
def reference_dir(data_dir, tmp_path_factory):
  """One uninterrupted deterministic run of `train_command`, shared by the tests below."""
  train_dir = tmp_path_factory.mktemp("resume_reference")
  subprocess.run(train_command(data_dir, train_dir), cwd=ROOT, env=binary_env(), check=True,
                 capture_output=True, timeout=300)
  return train_dir


@pytest.fixture(scope="module")
def reference_model(reference_dir):
  return keras.saving.load_model(reference_dir / "model.keras")


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


def signal_when_backed_up(command, state_path, ready, signal_number, log_path,
                          timeout: float = 240) -> tuple[int, str]:
  """Runs `command`, sends it `signal_number` once `ready(backup state)`; (status, stderr)."""
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=ROOT, env=binary_env(), stdout=subprocess.DEVNULL,
                               stderr=log)
    try:
      deadline = time.time() + timeout
      while not (state_path.exists() and ready(json.loads(state_path.read_text()))):
        if process.poll() is not None or time.time() > deadline:
          pytest.fail(f"no fitting backup before the run ended: {command}")
        time.sleep(0.02)
      process.send_signal(signal_number)
      process.wait(timeout=120)
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()
  return process.returncode, log_path.read_text()


def tensorboard_scalars(log_dir) -> list[tuple[str, int, float]]:
  """(tag, step, value) of every scalar under `log_dir`, across the event files of all runs."""
  points = []
  for path in sorted(log_dir.glob("**/events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        number = tf.make_ndarray(value.tensor)
        if number.dtype.kind == "f" and number.shape == ():
          points.append((value.tag, int(event.step), float(number)))
  return points


def test_stopped_and_killed_runs_resume_and_end_as_one_unbroken_run(
    data_dir, reference_dir, reference_model, tmp_path):
  """SIGINT, then SIGTERM: one line each, status 130 / 143; then SIGKILL; the rerun ends it.

  The resumed run is the uninterrupted one, bit for bit (so deterministic runs are
  identical, too): its per-epoch losses (each counts all 30 of
  its epoch's steps, the ones before the stops included), its weights and its
  TensorBoard points. A stop writes each point once; a SIGKILL may land between a
  backup's TensorBoard flush and its state, which repeats that one point.
  """
  run_dir = tmp_path / "run"
  # A backup every step slows the steps, so each signal lands well inside the epoch.
  command = train_command(data_dir, run_dir) + ["--backup_steps=1"]
  state_path = run_dir / "backup" / "backup_state.json"
  for number, status, epoch in [(signal.SIGINT, 130, 1), (signal.SIGTERM, 143, 2)]:
    returncode, stderr = signal_when_backed_up(
        command, state_path, lambda state, e=epoch: state["epoch"] == e and state["step"] >= 2,
        number, tmp_path / f"{number.name}.log")
    assert returncode == status, stderr[-3000:]  # 128 + the signal number
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    state = json.loads(state_path.read_text())
    assert [line for line in stderr.splitlines() if "stopped by" in line] == [
        f"yt8m_train.py: stopped by {number.name} at epoch {epoch + 1}/3, step "
        f"{state['step']}/30; backed up in {run_dir}/backup: the same command resumes "
        "there"], stderr[-3000:]
    assert state["epoch"] == epoch and 0 < state["step"] < 30  # mid-epoch, as the line says
  # The stopped runs wrote the reference's points up to the stop, each once.
  done = 30 * state["epoch"] + state["step"]
  points, want = tensorboard_scalars(run_dir / "logs"), tensorboard_scalars(reference_dir / "logs")
  keys = sorted((tag, step) for tag, step, _ in points)
  assert keys == sorted(set(keys)) == sorted(
      (tag, step) for tag, step, _ in want
      if (step <= done if tag.startswith("batch_") else step < state["epoch"]))
  killed_at = kill_when_backed_up(command, state_path,
                                  lambda state: state["epoch"] == 2 and state["step"] >= 20,
                                  "a later backup of the third epoch")
  assert not (run_dir / "model.keras").exists()

  result = subprocess.run(command, cwd=ROOT, env=binary_env(), capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {run_dir}/backup: epoch 2, step {killed_at['step']}" in result.stderr
  # The report counts the whole run, the steps before the stops included (3 x 30).
  assert "trained 90 steps" in result.stderr
  assert not (run_dir / "backup").exists()
  expected = json.loads((reference_dir / "train_result.json").read_text())["history"]
  got = json.loads((run_dir / "train_result.json").read_text())["history"]
  assert got["loss"] == expected["loss"] and len(got["loss"]) == 3
  resumed = keras.saving.load_model(run_dir / "model.keras")
  assert len(resumed.get_weights()) == len(reference_model.get_weights())
  for expected_weights, actual in zip(reference_model.get_weights(), resumed.get_weights()):
    np.testing.assert_array_equal(actual, expected_weights)
  points = tensorboard_scalars(run_dir / "logs")
  epoch_points = sorted(p for p in points if p[0].startswith("epoch_"))
  assert [(tag, step) for tag, step, _ in epoch_points] == sorted(
      (tag, step) for tag, step, _ in want if tag.startswith("epoch_"))
  assert {p for p in points if p[0] in ("epoch_loss", "batch_loss")} == {
      p for p in want if p[0] in ("epoch_loss", "batch_loss")}
  assert sorted({step for tag, step, _ in points if tag == "batch_loss"}) == list(
      range(10, 91, 10))
