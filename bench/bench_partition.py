"""Algorithm 1's streaming partition: memory at two data sizes; the online transform's cost.

(a) Peak memory of the partition passes (`partition.partition_dataset`) over 20k and
    80k generated videos of width 1152 (3862 classes, the 386 most frequent split),
    each size in a fresh subprocess. The videos come from a stateless random
    generator inside tf.data, so the data (352 MiB at 80k) is never in memory: what
    the process grows by is the passes' state and TF's per-batch buffers. The ratio
    of the two growths should be about 1 (bounded by classes × (features + bins) and
    the batch, not by videos).
(b) Examples/s of the project's reader (`reader.build_dataset`, batch 512, as training
    reads the shards) alone vs followed by the subclass transform (split + eq. (12)
    copies, rebatched to 512), same records, same run,
    for 386 classes split: the most frequent ones (nearly every video gets a copy:
    the most work) and 386 at random. Both ratios are printed: examples delivered
    per second (what a training step consumes; target ≥ 0.8), and input videos per
    second (lower by the copies' share, which doubles the output). Records: the real
    YT8M validate shards when present (../shared/data), else synthetic records
    written to a temp dir.

  python -m bench.bench_partition   (about a minute on 2 CPU cores)
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from bench import real_data
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass import augment, partition

NUM_CLASSES = 3862
NUM_SELECTED = 386
BATCH_SIZE = 512
MEMORY_SIZES = (20_000, 80_000)
SYNTHETIC_VIDEOS = 20_480
_ROOT = pathlib.Path(__file__).resolve().parents[1]


def generated_dataset(num_videos: int, seed: int = 0) -> tf.data.Dataset:
  """Batches of random normalized (1024 + 128) features and skewed multi-hot labels.

  Batch b is drawn from stateless seeds (seed, b), so every pass sees the same videos
  without storing them. Class ids are ⌊3862 u³⌋: low ids are frequent, as in YT8M,
  where a few classes hold most labels.
  """
  num_batches = -(-num_videos // BATCH_SIZE)

  def make_batch(index):
    size = tf.minimum(tf.constant(BATCH_SIZE, tf.int64), num_videos - index * BATCH_SIZE)
    seeds = [tf.stack([index, tf.constant(3 * seed + part, tf.int64)]) for part in range(3)]
    rgb = tf.math.l2_normalize(tf.random.stateless_normal([size, 1024], seeds[0]), axis=1)
    audio = tf.math.l2_normalize(tf.random.stateless_normal([size, 128], seeds[1]), axis=1)
    uniform = tf.random.stateless_uniform([size, 3], seeds[2])
    label_ids = tf.cast(NUM_CLASSES * uniform ** 3, tf.int64)
    labels = tf.reduce_max(tf.one_hot(label_ids, NUM_CLASSES), axis=1)
    return tf.concat([rgb, audio], axis=1), labels

  return tf.data.Dataset.range(num_batches).map(make_batch, num_parallel_calls=tf.data.AUTOTUNE)


def _current_rss_kib() -> int:
  with open("/proc/self/statm") as stream:
    return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def memory_child(num_videos: int) -> dict:
  """In a fresh process: RSS growth of the whole partition over `num_videos` videos."""
  dataset = generated_dataset(num_videos)
  before = _current_rss_kib()
  start = time.perf_counter()
  plan = partition.partition_dataset(dataset, list(range(NUM_SELECTED)))
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  return {"videos": num_videos, "rss_before_mib": before / 1024, "peak_mib": peak / 1024,
          "growth_mib": (peak - before) / 1024, "seconds": seconds,
          "largest_class": int(plan.subclass_counts.sum(axis=1).max())}


def _memory(num_videos: int) -> dict:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(_ROOT))
  output = subprocess.run(
      [sys.executable, "-m", "bench.bench_partition", "--memory_child", str(num_videos)],
      capture_output=True, text=True, check=True, env=env, cwd=_ROOT).stdout
  return json.loads(output.strip().splitlines()[-1])


def _write_records(path: str, num_videos: int) -> None:
  """Synthetic video-level records shaped like YT8M's (ids, labels, mean_rgb, mean_audio)."""
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path) as writer:
    for index in range(num_videos):
      labels = np.unique((NUM_CLASSES * rng.random(3) ** 3).astype(np.int64))
      feature = {
          "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"v%06d" % index])),
          "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
          "mean_rgb": tf.train.Feature(float_list=tf.train.FloatList(value=rng.normal(size=1024))),
          "mean_audio": tf.train.Feature(float_list=tf.train.FloatList(value=rng.normal(size=128)))}
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())


def _pass(dataset: tf.data.Dataset) -> tuple[float, int]:
  """Seconds for one full pass, and the examples it yields."""
  start, produced = time.perf_counter(), 0
  for features, _ in dataset:
    produced += int(features.shape[0])
  return time.perf_counter() - start, produced


def _compare(plain: tf.data.Dataset, transformed: tf.data.Dataset, repeats: int = 5) -> dict:
  """Best pass times of both pipelines, alternated so that load drifts hit both alike."""
  best = {"plain": np.inf, "transformed": np.inf}
  produced = {}
  for _ in range(repeats):
    for name, dataset in (("plain", plain), ("transformed", transformed)):
      seconds, produced[name] = _pass(dataset)
      best[name] = min(best[name], seconds)
  return {"reader_examples_per_second": produced["plain"] / best["plain"],
          "transformed_examples_per_second": produced["transformed"] / best["transformed"],
          "transformed_videos_per_second": produced["plain"] / best["transformed"],
          "augmented_fraction": produced["transformed"] / produced["plain"] - 1}


def _throughput(scratch: str) -> dict:
  if real_data.VALIDATE.is_dir():
    files = sorted(str(p) for p in real_data.VALIDATE.glob("*.tfrecord"))
    source = "real YT8M 2018 validate shards"
  else:
    files = [os.path.join(scratch, "videos.tfrecord")]
    _write_records(files[0], SYNTHETIC_VIDEOS)
    source = "synthetic records"
  # The project's own reader, as training reads the shards: the baseline the transformed
  # pipeline is compared with.
  plain = reader.build_dataset(reader.ReaderConfig(",".join(files), num_classes=NUM_CLASSES,
                                                   batch_size=BATCH_SIZE))
  counts = np.zeros(NUM_CLASSES)
  for _, labels in plain:
    counts += labels.numpy().sum(axis=0)
  selections = {
      # The most frequent classes: the most videos get a copy, the transform's worst case.
      "most_frequent": np.argsort(-counts, kind="stable")[:NUM_SELECTED],
      "random": np.random.default_rng(0).choice(np.flatnonzero(counts), NUM_SELECTED,
                                                replace=False)}
  results = {"source": source, "videos": int(_pass(plain)[1])}
  for name, selected in selections.items():
    start = time.perf_counter()
    plan = partition.partition_dataset(plain, selected)
    seconds = time.perf_counter() - start
    transformed = plain.map(augment.make_subclass_transform(plan),
                            num_parallel_calls=tf.data.AUTOTUNE).rebatch(BATCH_SIZE)
    result = _compare(plain, transformed)
    result["examples_ratio"] = (result["transformed_examples_per_second"]
                                / result["reader_examples_per_second"])
    result["videos_ratio"] = (result["transformed_videos_per_second"]
                              / result["reader_examples_per_second"])
    result["partition_seconds"] = seconds
    results[name] = result
  return results


def main() -> dict:
  memory = {size: _memory(size) for size in MEMORY_SIZES}
  small, large = (memory[size] for size in MEMORY_SIZES)
  growth_ratio = large["growth_mib"] / small["growth_mib"]
  data_mib = MEMORY_SIZES[1] * 1152 * 4 / 2 ** 20
  print(f"(a) partition passes, {NUM_SELECTED} of {NUM_CLASSES} classes split, width 1152, "
        "fresh process each:")
  for entry in (small, large):
    print(f"  {entry['videos']:>6} videos: RSS {entry['rss_before_mib']:6.0f} MiB before, "
          f"peak {entry['peak_mib']:6.0f} MiB, growth {entry['growth_mib']:6.1f} MiB, "
          f"{entry['seconds']:5.1f} s, largest class {entry['largest_class']}")
  print(f"  growth ratio {growth_ratio:.2f} for 4x the videos "
        f"(the {MEMORY_SIZES[1]} videos' features alone are {data_mib:.0f} MiB)")
  with tempfile.TemporaryDirectory() as scratch:
    speed = _throughput(scratch)
  print(f"(b) transform (split + eq. (12) copies + rebatch to {BATCH_SIZE}) on {speed['source']} "
        f"({speed['videos']} videos):")
  for name in ("most_frequent", "random"):
    result = speed[name]
    print(f"  {NUM_SELECTED} {name.replace('_', ' ')} classes split "
          f"(+{100 * result['augmented_fraction']:.0f}% examples; partition "
          f"{result['partition_seconds']:.1f} s):")
    print(f"    reader                 {result['reader_examples_per_second']:9.0f} examples/s")
    print(f"    + subclass transform   {result['transformed_examples_per_second']:9.0f} examples/s"
          f" out, {result['transformed_videos_per_second']:9.0f} videos/s in")
    print(f"    ratio                  {result['examples_ratio']:9.2f} (examples out), "
          f"{result['videos_ratio']:.2f} (videos in)")
  return {"name": "partition", "memory_growth_ratio_4x_videos": growth_ratio,
          "memory": {str(size): entry for size, entry in memory.items()}, **speed}


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--memory_child":
    print(json.dumps(memory_child(int(sys.argv[2]))))
  else:
    main()
