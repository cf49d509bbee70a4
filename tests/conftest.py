"""Shared test fixtures: small YT8M shards written in a temp dir, and the real data dir."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from yt8m_sdnn.data import synthetic, writer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# $YT8M_DATA_DIR, else the shared folder beside the checkout.
SHARED_DATA = pathlib.Path(os.environ.get(
    "YT8M_DATA_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018"))


def real_data_dir() -> pathlib.Path:
  """The real YT8M 2018 files, or a skip saying where they were looked for."""
  if not (SHARED_DATA / "validate").is_dir():
    pytest.skip(f"real YT8M shards not found at {SHARED_DATA} (set YT8M_DATA_DIR)")
  return SHARED_DATA


ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_calls(calls, env=None, timeout: float = 300) -> tuple[list[dict], str]:
  """Runs entry scripts in one process (`tests/run_scripts.py`), one TensorFlow start-up.

  Args:
    calls: (path, args) pairs: a `bin/X.py` file or an installed console script, and
      the arguments after it. For runs that end before real work (--help, flag errors).

  Returns:
    ({"stdout", "stderr", "exit"} for each call, the process' own stderr, where
    TensorFlow's C++ lines land).
  """
  calls = [[str(path), [str(a) for a in args]] for path, args in calls]
  result = subprocess.run(
      [sys.executable, str(ROOT / "tests" / "run_scripts.py"), json.dumps(calls)],
      capture_output=True, text=True, cwd="/", timeout=timeout, check=False,
      env=env if env is not None else binary_env())
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def run_scripts(paths, *args: str, env=None, timeout: float = 300) -> dict[str, dict]:
  """`run_calls` of every path with the same `args`: str(path) -> its result, plus
  "" -> {"stderr": the process' own stderr}."""
  paths = [str(path) for path in paths]
  results, stderr = run_calls([(path, args) for path in paths], env=env, timeout=timeout)
  outputs = dict(zip(paths, results))
  outputs[""] = {"stderr": stderr}
  return outputs


@contextlib.contextmanager
def small_tmpfs(mount_point: pathlib.Path, size: str):
  """A real full disk: a tmpfs of `size` (e.g. "1m") at `mount_point`, or a skip where
  it cannot be mounted (needs root). Fails the test when it is still busy afterwards: a
  file on it was left open."""
  mount_point.mkdir(parents=True, exist_ok=True)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                            str(mount_point)], capture_output=True, text=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()[:200]}")
  try:
    yield mount_point
  finally:
    unmounted = subprocess.run(["umount", str(mount_point)], capture_output=True, text=True,
                               check=False)
    if unmounted.returncode != 0:  # busy: a file in it was left open
      subprocess.run(["umount", "-l", str(mount_point)], check=False)
      pytest.fail(f"{mount_point}: busy after the test ({unmounted.stderr.strip()[:200]}): a "
                  "file on the full disk was left open")


def binary_env(**overrides: str) -> dict[str, str]:
  """The environment the subprocess tests run the package's binaries in."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  env.update(overrides)
  return env


def kill_when_backed_up(command, state_path, ready, what: str, timeout: float = 240,
                        poll: float = 0.02) -> dict:
  """Runs `command` and SIGKILLs it once its backup state satisfies `ready(state)`.

  `state_path` is the run's backup_state.json; `what` says what the kill waits for,
  for the failure message. Fails the test when the run ends first or nothing fitting
  appears within `timeout` seconds. Returns the backup state left on disk after the
  kill (a later backup may have landed between the check and the signal).
  """
  state_path = pathlib.Path(state_path)
  process = subprocess.Popen(command, cwd=ROOT, env=binary_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + timeout
    while True:
      if state_path.exists() and ready(json.loads(state_path.read_text())):
        break
      if process.poll() is not None:
        pytest.fail(f"the run ended before {what}: {command}")
      if time.time() > deadline:
        pytest.fail(f"no backup with {what} appeared in {timeout:.0f} s: {command}")
      time.sleep(poll)
    process.send_signal(signal.SIGKILL)
    process.wait()
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  assert process.returncode == -signal.SIGKILL, process.returncode
  return json.loads(state_path.read_text())


def random_videos(num_videos: int, num_classes: int, seed: int = 0,
                  rgb_size: int = 1024, audio_size: int = 128):
  """Ids, label lists and raw (unnormalized) features of random videos."""
  rng = np.random.default_rng(seed)
  ids = [f"v{index:03d}" for index in range(num_videos)]
  labels = [sorted(rng.choice(num_classes, size=rng.integers(1, 4), replace=False).tolist())
            for _ in range(num_videos)]
  rgb = rng.normal(size=(num_videos, rgb_size)).astype(np.float32)
  audio = rng.normal(size=(num_videos, audio_size)).astype(np.float32)
  return ids, labels, rgb, audio


def write_video_shards(directory: pathlib.Path, ids, labels, rgb, audio, num_shards: int = 2,
                       id_key: str = "id") -> list[str]:
  """Writes video-level shards, videos split in order across `num_shards` files."""
  bounds = np.linspace(0, len(ids), num_shards + 1).astype(int)
  paths = []
  for shard in range(num_shards):
    path = str(directory / f"train{shard:02d}.tfrecord")
    writer.write_shard(path, (
        writer.video_example(ids[i], labels[i], {"mean_rgb": rgb[i], "mean_audio": audio[i]},
                             id_key=id_key)
        for i in range(bounds[shard], bounds[shard + 1])))
    paths.append(path)
  return paths


def l2_normalized(values: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(values, axis=1, keepdims=True)
  return values / np.maximum(norms, 1e-6)


def multi_hot(labels, num_classes: int) -> np.ndarray:
  out = np.zeros((len(labels), num_classes), np.float32)
  for row, ids in enumerate(labels):
    out[row, ids] = 1.0
  return out


@pytest.fixture
def video_shards(tmp_path):
  """Twelve videos, 10 classes, in two 2018-format shards; returns (dir, videos)."""
  videos = random_videos(12, 10)
  write_video_shards(tmp_path, *videos)
  return tmp_path, videos


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
  """Small synthetic shards (12 classes, 2 planted hard ones; 256 train, 96 validate)."""
  directory = tmp_path_factory.mktemp("synthetic")
  synthetic.generate(synthetic.SynthConfig(
      output_dir=str(directory), num_classes=12, num_train=256, num_validate=96,
      num_shards=2, num_hard_classes=2))
  return directory
