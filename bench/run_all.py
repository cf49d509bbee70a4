"""`make bench`: every benchmark, each a ratio measured side by side in one run.

Writes bench/results.json (atomically) with the machine described. The numbers are
ratios on purpose: this machine is shared and noisy, so absolute timings mean little.

  python -m bench.run_all [--only=reader,metrics]
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from bench import (bench_losses, bench_metrics, bench_neglection, bench_partition,
                   bench_reader, bench_training)
from yt8m_sdnn import artifacts

FLAGS = flags.FLAGS
BENCHMARKS = {"reader": bench_reader.main, "metrics": bench_metrics.main,
              "losses": bench_losses.main, "partition": bench_partition.main,
              "neglection": bench_neglection.main, "training": bench_training.main}
flags.DEFINE_list("only", list(BENCHMARKS), f"Benchmarks to run, among {list(BENCHMARKS)}.")
flags.DEFINE_string("output", os.path.join(os.path.dirname(__file__), "results.json"),
                    "Where the results go.")


def machine() -> dict:
  return {"platform": platform.platform(), "processor": platform.processor(),
          "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
          "tensorflow": tf.__version__,
          "gpus": [device.name for device in tf.config.list_physical_devices("GPU")]}


def _plain(value):
  """`value` with numpy scalars and arrays turned into JSON numbers and lists."""
  if isinstance(value, dict):
    return {str(key): _plain(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(item) for item in value]
  if isinstance(value, np.ndarray):
    return _plain(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  return value


def main(argv):
  del argv
  unknown = [name for name in FLAGS.only if name not in BENCHMARKS]
  if unknown:
    raise app.UsageError(f"Expected --only among {list(BENCHMARKS)}. Received: {unknown}")
  results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": {}}
  for name in FLAGS.only:
    print(f"\n== {name} ==")
    results["results"][name] = BENCHMARKS[name]()
  artifacts.write_json(FLAGS.output, _plain(results))
  print(f"\nwrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
