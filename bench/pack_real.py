"""Packs the real video-level shards into one numpy file (`yt8m_sdnn.data.packed`).

  python -m bench.pack_real --output_dir=device_data

reads the 100 real 2018 validate shards (../shared/data/yt8m-2018/validate, or
$YT8M_DATA_DIR) and writes `device_data/yt8m_video_level.npz` (28.4 MB): raw features
quantized to YT8M's 8-bit grid, sparse labels, ids, each video's shard, and the
converged-evidence protocol's train / validation / test split by shard. It is what a
machine without TensorFlow (`bench.device_run` on Keras + JAX) trains on. `--check_reader`
(on by default) compares the packed file against the tf.data reader's features and labels.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bench import real_data
from yt8m_sdnn.data import packed, reader
from yt8m_sdnn.data.files import resolve_files

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags of `main`; defined only when run as a program, so that importing
  this module (tests do) adds no flags beside the binaries' own."""
  flags.DEFINE_string("shards", str(real_data.VALIDATE), "Shards to pack: directory, glob or list.")
  flags.DEFINE_string("output_dir", "device_data", "Directory that receives the packed file.")
  flags.DEFINE_bool("check_reader", True, "Compare the packed file with the tf.data reader's output.")


def _parse(records: tf.Tensor, feature_names, feature_sizes, id_key: str):
  spec = {id_key: tf.io.FixedLenFeature([], tf.string, default_value=""),
          "labels": tf.io.VarLenFeature(tf.int64)}
  spec.update({name: tf.io.FixedLenFeature([size], tf.float32)
               for name, size in zip(feature_names, feature_sizes)})
  parsed = tf.io.parse_example(records, spec)
  features = tf.concat([parsed[name] for name in feature_names], axis=1)
  return parsed[id_key], features, parsed["labels"]


def read_raw(files: Sequence[str], feature_names=("mean_rgb", "mean_audio"),
             feature_sizes=(1024, 128), id_key: str = "id"):
  """Raw (unnormalized) features, label lists, ids and shard index of every video."""
  ids, features, labels, shard = [], [], [], []
  for index, path in enumerate(files):
    batches = tf.data.TFRecordDataset(path).batch(4096).map(
        lambda records: _parse(records, feature_names, feature_sizes, id_key))
    for batch_ids, batch_features, batch_labels in batches:
      ids.extend(value.decode() for value in batch_ids.numpy())
      features.append(batch_features.numpy())
      dense = tf.RaggedTensor.from_sparse(batch_labels)
      labels.extend(dense.to_list())
      shard.append(np.full(len(batch_features), index, np.int32))
  return (np.concatenate(features), labels, ids, np.concatenate(shard))


def pack(files: Sequence[str], output: str, splits: Mapping[str, str],
         num_classes: int = 3862) -> str:
  """Packs `files`; `splits` maps a name to comma-separated globs of shard file names."""
  features, labels, ids, shard = read_raw(files)
  names = [os.path.basename(path) for path in files]
  split_files = {name: sorted(n for n in names if any(
      fnmatch.fnmatch(n, pattern) for pattern in patterns.split(",")))
                 for name, patterns in splits.items()}
  outside = features[(features < packed.BIAS) | (features > packed.BIAS + 255 * packed.SCALE)]
  if outside.size:
    logging.warning("%d feature values lie outside the 8-bit grid and are clipped", outside.size)
  path = os.path.join(output, packed.PACKED_FILE)
  packed.save_packed(path, features, labels, ids, shard, names, ["mean_rgb", "mean_audio"],
                     [1024, 128], num_classes, split_files, source=",".join(names[:1]) + ",...")
  return path


def check(path: str, files: Sequence[str]) -> float:
  """Largest |packed − reader| feature difference; labels and ids must match exactly."""
  data = packed.load_packed(path)
  config = reader.ReaderConfig(",".join(files), num_classes=data.num_classes, batch_size=4096,
                               include_ids=True, deterministic=True)
  row_of = {video_id: row for row, video_id in enumerate(data.ids)}
  seen, worst = 0, 0.0
  for features, labels, batch_ids in reader.build_dataset(config):  # interleaved order
    try:
      rows = np.array([row_of[i.decode()] for i in batch_ids.numpy()])
    except KeyError as error:
      raise AssertionError(f"video {error} is not in {path}") from None
    if not np.array_equal(labels.numpy(), data.dense_labels(rows)):
      raise AssertionError(f"labels differ for videos {data.ids[rows[:3]]}...")
    worst = max(worst, float(np.abs(features.numpy() - data.features[rows]).max()))
    seen += len(rows)
  if seen != data.num_videos:
    raise AssertionError(f"the reader read {seen} videos, the file holds {data.num_videos}")
  return worst


def main(argv):
  del argv
  files = resolve_files(FLAGS.shards)
  path = pack(files, FLAGS.output_dir, real_data.SPLIT)
  data = packed.load_packed(path)
  print(f"wrote {path}: {data.num_videos} videos, {os.path.getsize(path) / 2**20:.1f} MB; "
        + ", ".join(f"{name} {len(shards)} shards" for name, shards in data.splits.items()))
  if FLAGS.check_reader:
    print(f"largest feature difference to the tf.data reader (normalized): "
          f"{check(path, files):.2e}; labels and ids identical")


if __name__ == "__main__":
  define_flags()
  app.run(main)
