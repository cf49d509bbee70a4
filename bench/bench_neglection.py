"""Benchmark: the cost of tracking θ during training, against the plain training step.

Times one training step of the paper's YouTube-8M CNN (`build_cnn(1152, 3862)`: 36,864
penultimate features, 3,862 classes) at batch 512, as `fit` runs it (`train_on_batch`
uses the same compiled train function; `jit_compile` is left at Keras' "auto", i.e.
XLA on a GPU and none on a CPU), for three trainers sharing one model: the plain
model, `NeglectionTrackingModel(method="auto")` (the Gram path here) and
`NeglectionTrackingModel(method="direct")` (the Xᵀ A products). Steps are interleaved
round by round, in a rotating order, so that drift in the machine's load hits all
three alike; the figure is the median step time after warm-up, and the ratios divide
by the plain model's.
Target: ratio_monitor ≤ 1.10.

Run (a few minutes on 2 CPU cores at the full size; seconds with the smaller flags):
  python -m bench.bench_neglection
  python -m bench.bench_neglection --batch_size 64 --num_classes 500 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics as stats
import time
from typing import Any, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from yt8m_sdnn.models import build_cnn
from yt8m_sdnn.neglection import NeglectionTrackingModel, choose_method


def _timed_step(trainer: keras.Model, x: tf.Tensor, y: tf.Tensor) -> float:
  start = time.perf_counter()
  trainer.train_on_batch(x, y)  # Returns numpy values: the step has finished.
  return time.perf_counter() - start


def main(batch_size: int = 512, num_classes: int = 3862, feature_size: int = 1152,
         warmup: int = 2, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
  """Times the three trainers and prints and returns the ratios to the plain step."""
  keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.normal(size=(batch_size, feature_size)).astype(np.float32))
  # About 3 labels per video, as in YouTube-8M.
  y = tf.constant((rng.uniform(size=(batch_size, num_classes)) < 3.0 / num_classes)
                  .astype(np.float32))
  model = build_cnn(feature_size, num_classes)
  trainers = {
      "plain": model,
      "monitor": NeglectionTrackingModel(model, method="auto"),
      "naive": NeglectionTrackingModel(model, method="direct"),
  }
  for trainer in trainers.values():
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-3),
                    loss="binary_crossentropy")
  times = {name: [] for name in trainers}
  names = list(trainers)
  for round_index in range(warmup + repeats):
    # Rotating the order keeps one trainer from always following the memory-hungry one.
    shift = round_index % len(names)
    for name in names[shift:] + names[:shift]:
      elapsed = _timed_step(trainers[name], x, y)
      if round_index >= warmup:
        times[name].append(elapsed)
  medians = {name: stats.median(values) for name, values in times.items()}
  penultimate = model.get_layer("predictions").input.shape[-1]
  result = {
      "name": "neglection_overhead",
      "ratio_monitor": medians["monitor"] / medians["plain"],
      "ratio_naive": medians["naive"] / medians["plain"],
      "seconds_plain": medians["plain"],
      "seconds_monitor": medians["monitor"],
      "seconds_naive": medians["naive"],
      "auto_method": choose_method(batch_size, penultimate, num_classes),
      "jit_compile": bool(model.jit_compile),
      "batch_size": batch_size,
      "feature_size": penultimate,
      "num_classes": num_classes,
      "repeats": repeats,
      "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
  }
  print(f"neglection overhead: batch {batch_size}, {penultimate} features, "
        f"{num_classes} classes, {result['device']}, jit_compile={result['jit_compile']}, "
        f"median of {repeats} steps after {warmup} warm-up")
  for name, method in (("plain", "-"), ("monitor", result["auto_method"]),
                       ("naive", "direct")):
    print(f"  {name:8s} {method:7s} {medians[name]:8.3f} s/step  "
          f"x{medians[name] / medians['plain']:.3f}")
  return result


def _parse_args(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch_size", type=int, default=512)
  parser.add_argument("--num_classes", type=int, default=3862)
  parser.add_argument("--feature_size", type=int, default=1152)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  return vars(parser.parse_args(argv))


if __name__ == "__main__":
  main(**_parse_args())
