"""The feature cache: the shards' batches bit for bit, rebuilt on any change, never half-trusted."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, binary_env, random_videos, write_video_shards
from yt8m_sdnn.data import feature_cache, reader, writer

# "streamed": a directory cache too large to hold in memory, read from its files.
KINDS = ["directory", "memory", "streamed"]


@pytest.fixture(autouse=True)
def fresh_process_memory():
  feature_cache.clear_memory()
  yield
  feature_cache.clear_memory()


def config_for(path, **kwargs) -> reader.ReaderConfig:
  kwargs.setdefault("num_classes", 10)
  kwargs.setdefault("batch_size", 5)
  kwargs.setdefault("deterministic", True)
  return reader.ReaderConfig(data_pattern=str(path), **kwargs)


def batches(config: reader.ReaderConfig) -> list[list[np.ndarray]]:
  return [[np.asarray(part) for part in batch] for batch in reader.build_dataset(config)]


def assert_same_batches(actual, expected) -> None:
  assert len(actual) == len(expected)
  for got, want in zip(actual, expected):
    assert len(got) == len(want)
    for got_part, want_part in zip(got, want):
      np.testing.assert_array_equal(got_part, want_part)


def write_shards(tmp_path, num_videos: int = 23, num_shards: int = 3, seed: int = 0):
  """Shards of uneven sizes (23 videos in 3), so the interleave switches files mid-way."""
  directory = tmp_path / "shards"
  directory.mkdir(exist_ok=True)
  videos = random_videos(num_videos, 10, seed=seed)
  return directory, write_video_shards(directory, *videos, num_shards=num_shards), videos


def location(kind: str, tmp_path, monkeypatch) -> str:
  if kind == "memory":
    return feature_cache.MEMORY
  if kind == "streamed":
    monkeypatch.setattr(feature_cache, "_MEMORY_SHARE", 0.0)
  return str(tmp_path / "cache")


def complete_caches(directory: pathlib.Path) -> list[str]:
  """The cache directories a build would trust (renamed, with a manifest)."""
  if not directory.is_dir():
    return []
  return sorted(path.name for path in directory.iterdir()
                if not path.name.startswith(".") and (path / feature_cache.MANIFEST_FILE).exists())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("training", [False, True])
def test_cached_batches_equal_the_shards_bit_for_bit(tmp_path, monkeypatch, kind, training):
  directory, _, _ = write_shards(tmp_path)
  config = config_for(directory, training=training, seed=4, num_epochs=2, include_ids=True)
  expected = batches(config)
  cached = dataclasses.replace(config, cache=location(kind, tmp_path, monkeypatch))
  assert_same_batches(batches(cached), expected)  # the call that builds the cache
  assert_same_batches(batches(cached), expected)  # a later one, reading it
  without_ids = dataclasses.replace(cached, include_ids=False)
  assert_same_batches(batches(without_ids), [batch[:2] for batch in expected])


def test_frame_level_cache_holds_the_mean_pooled_frames(tmp_path):
  rng = np.random.default_rng(5)
  for shard in range(2):
    writer.write_shard(str(tmp_path / f"frames{shard}.tfrecord"), [writer.frame_example(
        f"f{shard}{i}", [i % 10], {"rgb": rng.integers(0, 256, (i + 1, 1024), dtype=np.uint8),
                                   "audio": rng.integers(0, 256, (i + 1, 128), dtype=np.uint8)})
        for i in range(5 + shard)])
  config = config_for(tmp_path, frame_level=True, feature_names=("rgb", "audio"),
                      training=True, seed=1, include_ids=True)
  expected = batches(config)
  assert_same_batches(batches(dataclasses.replace(config, cache=str(tmp_path / "cache"))),
                      expected)


def test_skip_corrupt_cache_holds_the_good_records(tmp_path):
  directory, paths, _ = write_shards(tmp_path)
  with open(paths[1], "ab") as stream:
    stream.write(b"\x00" * 40)  # garbage after the middle shard's last record
  config = config_for(directory, skip_corrupt=True, include_ids=True)
  cached = dataclasses.replace(config, cache=str(tmp_path / "cache"))
  ids = [video for batch in batches(cached) for video in batch[2]]
  # The same videos as read from the shards (the order may differ: the shards' reader
  # drops a bad record after the interleave, the cache before it).
  assert sorted(ids) == sorted(video for batch in batches(config) for video in batch[2])
  assert len(ids) == 23


@pytest.mark.parametrize("kind", KINDS)
def test_each_cached_epoch_is_shuffled_anew(tmp_path, monkeypatch, kind):
  directory, _, (ids, _, _, _) = write_shards(tmp_path)
  config = config_for(directory, training=True, seed=4, include_ids=True,
                      cache=location(kind, tmp_path, monkeypatch))
  dataset = reader.build_dataset(config)
  first, second = ([video for batch in dataset for video in batch[2].numpy()] for _ in range(2))
  assert sorted(first) == sorted(second) == sorted(video.encode() for video in ids)
  assert first != second
  other_seed = batches(dataclasses.replace(config, seed=5))
  assert [video for batch in other_seed for video in batch[2]] != first


@pytest.mark.parametrize("kind", ["directory", "memory"])
def test_rewritten_shard_is_read_afresh(tmp_path, monkeypatch, kind):
  directory, paths, (ids, labels, rgb, audio) = write_shards(tmp_path)
  config = config_for(directory, include_ids=True, cache=location(kind, tmp_path, monkeypatch))
  batches(config)
  before = complete_caches(tmp_path / "cache")
  # Rewrite the middle shard (videos 7..14 of 23) in place: same inode, same size,
  # other feature values.
  rgb[7:15] = -rgb[7:15]
  replacement = str(tmp_path / "replacement.tfrecord")
  writer.write_shard(replacement, (writer.video_example(
      ids[i], labels[i], {"mean_rgb": rgb[i], "mean_audio": audio[i]}) for i in range(7, 15)))
  size = os.path.getsize(paths[1])
  with open(replacement, "rb") as source, open(paths[1], "r+b") as target:
    target.write(source.read())
  assert os.path.getsize(paths[1]) == size
  expected = batches(dataclasses.replace(config, cache=None))
  assert_same_batches(batches(config), expected)
  if kind == "directory":
    after = complete_caches(tmp_path / "cache")
    assert len(after) == 1 and after != before  # rebuilt; the stale cache is deleted


def test_other_decoding_settings_get_their_own_cache(tmp_path):
  directory, _, _ = write_shards(tmp_path)
  config = config_for(directory, cache=str(tmp_path / "cache"))
  batches(config)
  batches(dataclasses.replace(config, num_classes=12))
  batches(dataclasses.replace(config, batch_size=7, training=True))  # read settings: shared
  assert len(complete_caches(tmp_path / "cache")) == 2


def test_build_stopped_by_a_bad_record_leaves_nothing_trusted(tmp_path):
  directory, paths, (_, _, _, audio) = write_shards(tmp_path)
  good = open(paths[2], "rb").read()
  writer.write_shard(paths[2], [writer.video_example(
      "Bad", [1], {"mean_rgb": np.full(1024, np.nan), "mean_audio": audio[0]})])
  cache = tmp_path / "cache"
  config = config_for(directory, cache=str(cache))
  # The first two shards are decoded and written, then the third fails.
  with pytest.raises(reader.DataError,
                     match=f"{paths[2]}: record 0 .id 'Bad'.: 'mean_rgb' holds NaN"):
    reader.build_dataset(config)
  assert complete_caches(cache) == [] and os.listdir(cache) == []
  with open(paths[2], "wb") as stream:
    stream.write(good)
  assert_same_batches(batches(config), batches(dataclasses.replace(config, cache=None)))
  assert len(complete_caches(cache)) == 1


# Builds the cache of argv[1] in argv[2] and SIGKILLs itself once the second chunk is
# decoded (the first shard's is written): a first pass killed half-way.
KILLED_BUILD = '''
import os, signal, sys
from yt8m_sdnn.data import reader
decoded_chunks = reader._decoded_chunks

class Dying:
  def __init__(self, dataset):
    self.dataset = dataset
  def as_numpy_iterator(self):
    for count, chunk in enumerate(self.dataset.as_numpy_iterator()):
      if count == 1:
        os.kill(os.getpid(), signal.SIGKILL)
      yield chunk

reader._decoded_chunks = lambda config, files: Dying(decoded_chunks(config, files))
reader.build_dataset(reader.ReaderConfig(sys.argv[1], num_classes=10, cache=sys.argv[2]))
'''


def test_killed_build_leaves_nothing_trusted(tmp_path):
  directory, _, _ = write_shards(tmp_path)
  cache = tmp_path / "cache"
  script = tmp_path / "killed_build.py"
  script.write_text(KILLED_BUILD)
  result = subprocess.run([sys.executable, str(script), str(directory), str(cache)], cwd=ROOT,
                          env=binary_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == -9, result.stderr[-2000:]
  left = os.listdir(cache)
  assert len(left) == 1 and left[0].startswith(".building-")  # half a build, never trusted
  assert complete_caches(cache) == []
  config = config_for(directory, cache=str(cache))
  assert_same_batches(batches(config), batches(dataclasses.replace(config, cache=None)))
  # The next build removed the killed one's directory (its process is gone).
  assert [name for name in os.listdir(cache) if name.startswith(".")] == []
  assert len(complete_caches(cache)) == 1


def test_damaged_cache_file_is_decoded_afresh(tmp_path):
  directory, _, _ = write_shards(tmp_path)
  config = config_for(directory, cache=str(tmp_path / "cache"))
  expected = batches(config)
  [key] = complete_caches(tmp_path / "cache")
  damaged = tmp_path / "cache" / key / "shard-00001.tfrecord"
  data = bytearray(damaged.read_bytes())
  data[len(data) // 2] ^= 0xFF  # same size: only the checksums can tell
  damaged.write_bytes(bytes(data))
  feature_cache.clear_memory()  # as a new process would
  assert_same_batches(batches(config), expected)


def train_command(data_dir, train_dir, *flags):
  return [sys.executable, "-m", "bin.yt8m_train", f"--train_data={data_dir}/train",
          f"--train_dir={train_dir}", "--model=logistic", "--num_classes=12", "--batch_size=32",
          "--num_epochs=2", "--seed=3", "--deterministic", "--learning_rate=0.01", *flags]


def test_training_on_a_cache_gives_bit_identical_weights(synthetic_dir, tmp_path):
  cache = tmp_path / "cache"
  # (--cache=memory yields the same batches: test_cached_batches_equal_the_shards_bit_for_bit.)
  runs = {"shards": [], "cache_built": [f"--cache={cache}"], "cache_reused": [f"--cache={cache}"]}
  weights, logs = {}, {}
  for name, flags in runs.items():
    result = subprocess.run(train_command(synthetic_dir, tmp_path / name, *flags), cwd=ROOT,
                            env=binary_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    logs[name] = result.stderr
    weights[name] = keras.saving.load_model(tmp_path / name / "model.keras").get_weights()
  assert "feature cache complete" in logs["cache_built"]
  assert "decoding" not in logs["cache_reused"]  # another process read the built cache
  for name in ("cache_built", "cache_reused"):
    assert len(weights[name]) == len(weights["shards"])
    for actual, expected in zip(weights[name], weights["shards"]):
      np.testing.assert_array_equal(actual, expected)


# One worker of a two-worker cluster: the video ids it reads from the shards, from a
# directory cache (both workers build it at once) and from a memory cache.
WORKER = '''
import json, sys
from yt8m_sdnn import distribute
from yt8m_sdnn.data import reader
data, cache, output = sys.argv[1:]
strategy = distribute.make_strategy("multi_worker")
seen = {}
for name, location in (("shards", None), ("directory", cache), ("memory", "memory")):
  config = reader.ReaderConfig(data, num_classes=10, batch_size=4, include_ids=True,
                               deterministic=True, cache=location)
  ids = []
  for batch in strategy.experimental_distribute_dataset(reader.build_dataset(config)):
    for part in strategy.experimental_local_results(batch[2]):
      ids.extend(video.decode() for video in part.numpy())
  seen[name] = ids
with open(output, "w") as stream:
  json.dump(seen, stream)
'''


def test_two_workers_read_the_same_whole_shards_from_a_cache(tmp_path):
  directory = tmp_path / "shards"
  directory.mkdir()
  write_video_shards(directory, *random_videos(24, 10), num_shards=4)
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  sockets = [socket.socket() for _ in range(2)]
  for sock in sockets:
    sock.bind(("127.0.0.1", 0))
  cluster = {"worker": [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]}
  for sock in sockets:
    sock.close()
  workers = [subprocess.Popen(
      [sys.executable, str(script), str(directory), str(tmp_path / "cache"),
       str(tmp_path / f"worker{index}.json")], cwd=ROOT, text=True,
      env=dict(binary_env(), TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}})),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for index in range(2)]
  try:
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
  finally:
    for worker in workers:
      worker.kill()
  for worker, error in zip(workers, errors):
    assert worker.returncode == 0, error[-3000:]
  seen = [json.loads((tmp_path / f"worker{index}.json").read_text()) for index in range(2)]
  for worker_seen in seen:
    # Whole shards per worker (6 videos each), in the same order from every source.
    assert worker_seen["directory"] == worker_seen["memory"] == worker_seen["shards"]
    assert len(worker_seen["shards"]) == 12
  assert sorted(seen[0]["shards"] + seen[1]["shards"]) == [f"v{i:03d}" for i in range(24)]
  assert len(complete_caches(tmp_path / "cache")) == 1


@pytest.mark.parametrize("kind", ["directory", "streamed"])
@pytest.mark.parametrize("edit", [{"max_labels": 1}, {"feature_size": 576}, {"digest": "0"}])
def test_an_edited_manifest_reads_as_stale_and_the_cache_is_rebuilt(tmp_path, monkeypatch,
                                                                    kind, edit):
  directory, _, (_, labels, _, _) = write_shards(tmp_path)
  assert max(len(video) for video in labels) > 1  # max_labels=1 would drop labels
  config = config_for(directory, cache=location(kind, tmp_path, monkeypatch), include_ids=True)
  expected = batches(dataclasses.replace(config, cache=None))
  assert_same_batches(batches(config), expected)
  [key] = complete_caches(tmp_path / "cache")
  manifest_path = tmp_path / "cache" / key / feature_cache.MANIFEST_FILE
  manifest = json.loads(manifest_path.read_text())
  manifest.update(edit)
  manifest_path.write_text(json.dumps(manifest))
  feature_cache.clear_memory()  # as a new process would
  assert_same_batches(batches(config), expected)
  assert complete_caches(tmp_path / "cache") == [key]
  assert json.loads(manifest_path.read_text())["digest"] != "0"  # rebuilt, not reused


def test_2017_shards_under_the_2018_id_key_are_named_with_the_key(tmp_path):
  directory = tmp_path / "shards"
  directory.mkdir()
  paths = write_video_shards(directory, *random_videos(6, 10), id_key="video_id")
  for cache in (feature_cache.MEMORY, str(tmp_path / "cache")):
    with pytest.raises(reader.DataError) as raised:
      reader.build_dataset(config_for(directory, cache=cache))
    message = str(raised.value)
    assert message.startswith(f"{paths[0]}: record 0 (id ''): a record has no 'id' video id"), (
        message)
    assert "--id_key=video_id" in message and "did they change" not in message
