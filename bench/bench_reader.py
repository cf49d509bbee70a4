"""Reader throughput: batched vectorized parsing vs per-example parsing vs raw reading.

Reads the real YT8M validate shards when ../shared/data is present (else synthetic
shards written to a temp dir) three ways in the same run and prints videos/s and the
ratios. Raw reading is the ceiling (bytes off disk, no parsing).

  python -m bench.bench_reader
"""

from __future__ import annotations

import tempfile
import time

import tensorflow as tf

from bench import real_data
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.data.files import resolve_files



def _time(dataset: tf.data.Dataset, count_fn, repeats: int = 3) -> float:
  """Best videos/s over `repeats` full passes (the first pass also warms the page cache)."""
  best = 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    total = 0
    for element in dataset:
      total += count_fn(element)
    best = max(best, total / (time.perf_counter() - start))
  return best


def per_example_dataset(files, batch_size: int) -> tf.data.Dataset:
  """The common slow path: parse every record on its own, then batch."""
  spec = {"id": tf.io.FixedLenFeature([], tf.string),
          "labels": tf.io.VarLenFeature(tf.int64),
          "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
          "mean_audio": tf.io.FixedLenFeature([128], tf.float32)}

  def parse(record):
    parsed = tf.io.parse_single_example(record, spec)
    features = tf.concat([tf.math.l2_normalize(parsed["mean_rgb"], 0),
                          tf.math.l2_normalize(parsed["mean_audio"], 0)], 0)
    labels = tf.reduce_max(tf.one_hot(parsed["labels"].values, 3862), 0)
    return features, labels

  records = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE)
  return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
      tf.data.AUTOTUNE)


def main(batch_size: int = 512) -> dict:
  with tempfile.TemporaryDirectory() as scratch:
    if real_data.VALIDATE.is_dir():
      pattern, source = str(real_data.VALIDATE), "real YT8M 2018 validate shards"
    else:
      synthetic.generate(synthetic.SynthConfig(output_dir=scratch, num_classes=3862,
                                               num_train=8000, num_validate=10))
      pattern, source = f"{scratch}/train", "synthetic shards"
    files = resolve_files(pattern)
    raw = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE
    ).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    config = reader.ReaderConfig(pattern, batch_size=batch_size)
    raw_rate = _time(raw, lambda batch: int(batch.shape[0]))
    per_example_rate = _time(per_example_dataset(files, batch_size),
                             lambda batch: int(batch[0].shape[0]))
    reader_rate = _time(reader.build_dataset(config), lambda batch: int(batch[0].shape[0]))
  result = {"name": "reader", "source": source, "raw_videos_per_second": raw_rate,
            "per_example_videos_per_second": per_example_rate,
            "reader_videos_per_second": reader_rate,
            "ratio_reader_vs_per_example": reader_rate / per_example_rate,
            "ratio_reader_vs_raw": reader_rate / raw_rate}
  print(f"reader benchmark on {source}, batch {batch_size}")
  print(f"  raw TFRecord reading      {raw_rate:10.0f} videos/s")
  print(f"  per-example parsing       {per_example_rate:10.0f} videos/s")
  print(f"  yt8m_sdnn reader          {reader_rate:10.0f} videos/s")
  print(f"  reader / per-example      {result['ratio_reader_vs_per_example']:10.2f}x")
  print(f"  reader / raw              {result['ratio_reader_vs_raw']:10.2f}x")
  return result


if __name__ == "__main__":
  main()
