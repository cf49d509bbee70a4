"""Reader throughput: raw reading, a plain parse pipeline, the project's reader, its cache.

Reads the real YT8M validate shards when ../shared/data is present (else synthetic
shards written to a temp dir), all in one run, and prints videos/s of each pipeline
and its ratio to raw reading (and the reader's to the plain pipeline with the same
shuffling):
- raw: `TFRecordDataset` interleaved, `batch(512)`: bytes off disk, no parsing.
- plain: raw, then `parse_example`, per-modality L2 normalization and
  `sparse.to_indicator` (as float32, what the reader yields); "plain, shuffled" puts
  `shuffle(4096)` before the batch, as the reader does when training.
- reader (eval, training): `reader.build_dataset`, every check on.
- cached epoch (memory, directory): the reader in training mode on a feature cache,
  after the pass that built it; "streamed": a directory cache read from its files, as
  one too large to hold in memory is.
Passes go round-robin over the pipelines (every other pass in reverse order) and each
keeps its best of `passes` (the machine is shared and noisy; the first pass also warms
the page cache).

  python -m bench.bench_reader
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import tensorflow as tf

from bench import real_data
from yt8m_sdnn.data import feature_cache, reader, synthetic
from yt8m_sdnn.data.files import resolve_files

SHUFFLE_BUFFER = 4096


def _videos_per_second(dataset: tf.data.Dataset) -> float:
  """Videos/s of one full pass over `dataset` (batches, features first)."""
  start = time.perf_counter()
  total = 0
  for batch in dataset:
    total += int(tf.nest.flatten(batch)[0].shape[0])
  return total / (time.perf_counter() - start)


def raw_dataset(files, batch_size: int, shuffle: bool = False) -> tf.data.Dataset:
  """Serialized records, interleaved as the reader does, optionally shuffled, batched."""
  records = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE)
  if shuffle:
    records = records.shuffle(SHUFFLE_BUFFER)
  return records.batch(batch_size)


def plain_dataset(files, batch_size: int, num_classes: int, shuffle: bool = False
                  ) -> tf.data.Dataset:
  """The plain pipeline: parse_example, L2-normalize each modality, to_indicator."""
  spec = {"labels": tf.io.VarLenFeature(tf.int64),
          "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
          "mean_audio": tf.io.FixedLenFeature([128], tf.float32)}

  def parse(serialized):
    parsed = tf.io.parse_example(serialized, spec)
    features = tf.concat([tf.math.l2_normalize(parsed["mean_rgb"], 1),
                          tf.math.l2_normalize(parsed["mean_audio"], 1)], 1)
    labels = tf.cast(tf.sparse.to_indicator(parsed["labels"], num_classes), tf.float32)
    return features, labels

  return raw_dataset(files, batch_size, shuffle).map(
      parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def main(batch_size: int = 512, passes: int = 3) -> dict:
  with tempfile.TemporaryDirectory() as scratch:
    if real_data.VALIDATE.is_dir():
      pattern, source, num_classes = str(real_data.VALIDATE), "real YT8M 2018 validate shards", 3862
    else:
      synthetic.generate(synthetic.SynthConfig(output_dir=scratch, num_classes=3862,
                                               num_train=8000, num_validate=10))
      pattern, source, num_classes = f"{scratch}/train", "synthetic shards", 3862
    files = resolve_files(pattern)
    config = reader.ReaderConfig(pattern, batch_size=batch_size, num_classes=num_classes)
    training = reader.ReaderConfig(pattern, batch_size=batch_size, num_classes=num_classes,
                                   training=True, shuffle_buffer=SHUFFLE_BUFFER)
    cache_dir = os.path.join(scratch, "cache")
    streamed_dir = os.path.join(scratch, "streamed")
    builds = {}
    # "streamed": what a directory cache too large to hold in memory costs, read from
    # its files (the share of memory it may take set to 0 while it is opened).
    held_share = feature_cache._MEMORY_SHARE  # pylint: disable=protected-access
    for name, location in (("streamed", streamed_dir), ("memory", feature_cache.MEMORY),
                           ("directory", cache_dir)):
      feature_cache._MEMORY_SHARE = 0.0 if name == "streamed" else held_share  # pylint: disable=protected-access
      start = time.perf_counter()
      reader.open_cache(reader.ReaderConfig(pattern, num_classes=num_classes, cache=location))
      builds[name] = time.perf_counter() - start
      if name == "streamed":
        streamed = reader.build_dataset(dataclasses.replace(training, cache=streamed_dir))
    feature_cache._MEMORY_SHARE = held_share  # pylint: disable=protected-access
    pipelines = {
        "raw": raw_dataset(files, batch_size).prefetch(tf.data.AUTOTUNE),
        "plain": plain_dataset(files, batch_size, num_classes),
        "plain_shuffled": plain_dataset(files, batch_size, num_classes, shuffle=True),
        "reader_eval": reader.build_dataset(config),
        "reader_training": reader.build_dataset(training),
        "cached_memory": reader.build_dataset(
            dataclasses.replace(training, cache=feature_cache.MEMORY)),
        "cached_directory": reader.build_dataset(dataclasses.replace(training, cache=cache_dir)),
        "cached_streamed": streamed,
    }
    rates = {name: 0.0 for name in pipelines}
    for number in range(passes):
      # Every other pass in reverse, so no pipeline always follows the same one.
      for name in list(pipelines)[::-1 if number % 2 else 1]:
        rates[name] = max(rates[name], _videos_per_second(pipelines[name]))
    feature_cache.clear_memory()
  raw = rates["raw"]
  result = {"name": "reader", "source": source, "batch_size": batch_size, "passes": passes,
            "cache_build_seconds": builds,
            **{f"{name}_videos_per_second": rate for name, rate in rates.items()},
            **{f"ratio_{name}_vs_raw": rate / raw for name, rate in rates.items()},
            "ratio_reader_eval_vs_plain": rates["reader_eval"] / rates["plain"],
            "ratio_reader_training_vs_plain_shuffled":
                rates["reader_training"] / rates["plain_shuffled"]}
  labels = {"raw": "raw TFRecord reading", "plain": "plain parse pipeline",
            "plain_shuffled": "plain, shuffle(4096)", "reader_eval": "reader, eval",
            "reader_training": "reader, training", "cached_memory": "cached epoch, memory",
            "cached_directory": "cached epoch, directory",
            "cached_streamed": "cached epoch, streamed"}
  print(f"reader benchmark on {source}, batch {batch_size}, best of {passes} passes")
  for name, label in labels.items():
    print(f"  {label:26s} {rates[name]:10.0f} videos/s  {rates[name] / raw:5.2f}x raw")
  print(f"  reader eval / plain          {result['ratio_reader_eval_vs_plain']:5.2f}x")
  print(f"  reader training / plain shuffled "
        f"{result['ratio_reader_training_vs_plain_shuffled']:5.2f}x")
  print("  cache builds (one decoding pass): " +
        ", ".join(f"{name} {seconds:.1f} s" for name, seconds in builds.items()))
  return result


if __name__ == "__main__":
  main()
