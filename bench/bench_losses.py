"""Subclass cross-entropy (eq. 11) vs Keras' binary cross-entropy: forward + backward cost.

Batch 512; SCE on 3,862 + 386 units (386 classes split in two), BCE on the same 4,248
units; both compiled with tf.function, median of repeats, same run.

  python -m bench.bench_losses
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from yt8m_sdnn import losses
from yt8m_sdnn.subclass.layout import SubclassLayout


def _step_time(loss_fn, logits, labels, repeats: int) -> float:
  variable = tf.Variable(logits)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      value = loss_fn(labels, variable)
    return tape.gradient(value, variable)

  step()  # trace
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step().numpy()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(batch_size: int = 512, num_classes: int = 3862, num_split: int = 386,
         repeats: int = 50) -> dict:
  layout = SubclassLayout(num_classes, tuple(range(0, num_classes, num_classes // num_split))[:num_split])
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(batch_size, layout.num_units)).astype(np.float32)
  labels = (rng.random((batch_size, layout.num_units)) < 0.001).astype(np.float32)
  sce = losses.SubclassCrossEntropy(layout.unit_to_class.tolist())
  bce = keras.losses.BinaryCrossentropy(from_logits=True)
  # Alternate the two so drift on a shared machine hits both alike.
  sce_times, bce_times = [], []
  for _ in range(3):
    bce_times.append(_step_time(bce, logits, labels, repeats))
    sce_times.append(_step_time(sce, logits, labels, repeats))
  sce_time, bce_time = float(np.median(sce_times)), float(np.median(bce_times))
  ratio = sce_time / bce_time
  print(f"loss forward+backward, batch {batch_size}, {layout.num_units} units "
        f"({num_split} classes split)")
  print(f"  keras BinaryCrossentropy  {1e3 * bce_time:8.3f} ms")
  print(f"  SubclassCrossEntropy      {1e3 * sce_time:8.3f} ms")
  print(f"  ratio SCE / BCE           {ratio:8.3f}")
  return {"name": "sce_vs_bce", "ratio": ratio, "sce_seconds": sce_time, "bce_seconds": bce_time}


if __name__ == "__main__":
  main()
