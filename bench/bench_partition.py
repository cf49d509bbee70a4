"""Partition pass memory at two data sizes, and the transform's cost on the reader.

(a) Peak resident memory of Algorithm 1's three streaming passes on synthetic shards
    of N and 4N videos, each in a fresh subprocess: the ratio stays near 1 because
    the statistics are bounded by classes × feature width, not by videos.
(b) Videos/s of the reader alone vs reader + subclass transform (eq. 12 copies) +
    rebatch, 10% of the classes split, same shards, same run.

  python -m bench.bench_partition
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import real_data
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.subclass import augment, partition


_CHILD = """
import json, resource, sys, tracemalloc
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass import partition
config = reader.ReaderConfig(sys.argv[1], num_classes=100, batch_size=512)
tracemalloc.start()
partition.partition_shards(config, list(range(0, 100, 10)))
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "python_peak_kib": tracemalloc.get_traced_memory()[1] / 1024}))
"""


def _peak_memory(pattern: str) -> dict:
  output = subprocess.run([sys.executable, "-c", _CHILD, pattern], capture_output=True,
                          text=True, check=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(
                              pathlib.Path(__file__).resolve().parents[1]),
                              "PATH": os.environ.get("PATH", "")}).stdout
  return json.loads(output.strip().splitlines()[-1])


def _rate(dataset, repeats: int = 3) -> float:
  best = 0.0
  for _ in range(repeats):
    start, count = time.perf_counter(), 0
    for features, _ in dataset:
      count += int(features.shape[0])
    best = max(best, count / (time.perf_counter() - start))
  return best


def main(small: int = 4000) -> dict:
  with tempfile.TemporaryDirectory() as scratch:
    memory = {}
    for size in (small, 4 * small):
      directory = f"{scratch}/{size}"
      synthetic.generate(synthetic.SynthConfig(output_dir=directory, num_train=size,
                                               num_validate=10, num_shards=4))
      memory[size] = _peak_memory(f"{directory}/train")
    if real_data.VALIDATE.is_dir():
      config = reader.ReaderConfig(str(real_data.VALIDATE), batch_size=512)
      source = "real YT8M validate shards"
    else:
      config, source = reader.ReaderConfig(f"{scratch}/{4 * small}/train", num_classes=100,
                                           batch_size=512), "synthetic shards"
    counts = np.zeros(config.num_classes)
    for _, labels in reader.build_dataset(config):
      counts += labels.numpy().sum(0)
    selected = np.argsort(-counts)[:config.num_classes // 10]
    plan = partition.partition_shards(config, selected)
    transform = augment.make_subclass_transform(plan)
    plain = _rate(reader.build_dataset(config))
    transformed = _rate(reader.build_dataset(config).map(transform).rebatch(config.batch_size))
  growth = memory[4 * small]["peak_kib"] / memory[small]["peak_kib"]
  python_growth = memory[4 * small]["python_peak_kib"] / memory[small]["python_peak_kib"]
  print(f"partition pass, {small} vs {4 * small} videos (fresh process each):")
  print(f"  peak RSS (TF runtime included)  {memory[small]['peak_kib'] / 1024:7.0f} MiB "
        f"{memory[4 * small]['peak_kib'] / 1024:7.0f} MiB  ratio {growth:.3f}")
  print(f"  peak Python heap (statistics)   {memory[small]['python_peak_kib'] / 1024:7.1f} MiB "
        f"{memory[4 * small]['python_peak_kib'] / 1024:7.1f} MiB  ratio {python_growth:.3f}")
  print(f"transform on {source}, {selected.size} classes split:")
  print(f"  reader                   {plain:10.0f} videos/s")
  print(f"  reader + transform       {transformed:10.0f} videos/s (counting originals and copies)")
  print(f"  ratio                    {transformed / plain:10.2f}")
  return {"name": "partition", "memory_ratio_4x_videos": growth,
          "python_heap_ratio_4x_videos": python_growth,
          "peak_mib": {str(k): v["peak_kib"] / 1024 for k, v in memory.items()},
          "python_peak_mib": {str(k): v["python_peak_kib"] / 1024 for k, v in memory.items()},
          "transform_ratio": transformed / plain, "reader_videos_per_second": plain,
          "transformed_videos_per_second": transformed}


if __name__ == "__main__":
  main()
