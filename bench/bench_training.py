"""Training examples/s of LR, CNN and SCNN side by side, and the paper's protocol estimated.

The paper's setting: 1152 features, 3,862 classes (the SCNN with 386 classes split in
two: 4,248 units), batch 512, Adam. Steps run on one in-memory batch (the reader is
several times faster than any of these steps, see bench_reader), interleaved model
by model over several repeats; the median step time of each gives examples/s and the
ratios. From the CNN's and SCNN's per-example cost it estimates the paper's full
protocol (5 epochs on 3.9M videos) on this machine; the SCNN sees more examples per
epoch (eq. 12's copies): `--scnn_example_factor`, by default the 1.83 measured on the
real shards (220 SCNN steps against 120 for the CNN, README).

  python -m bench.bench_training
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from yt8m_sdnn import losses, models
from yt8m_sdnn.subclass.layout import SubclassLayout

PAPER_TRAIN_VIDEOS = 3_900_000
PAPER_EPOCHS = 5


def _step_function(model: keras.Model, loss: keras.losses.Loss, features, labels):
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)

  def step():
    return model.train_on_batch(features, labels)

  return step


def _median_step_seconds(steps: dict, repeats: int, steps_per_repeat: int) -> dict:
  for step in steps.values():
    step()  # trace and build outside the timing
  times = {name: [] for name in steps}
  for _ in range(repeats):
    for name, step in steps.items():
      started = time.perf_counter()
      for _ in range(steps_per_repeat):
        step()
      times[name].append((time.perf_counter() - started) / steps_per_repeat)
  return {name: float(np.median(values)) for name, values in times.items()}


def main(batch_size: int = 512, num_classes: int = 3862, num_split: int = 386,
         feature_size: int = 1152, repeats: int = 3, steps_per_repeat: int = 2,
         scnn_example_factor: float = 1.83) -> dict:
  rng = np.random.default_rng(0)
  features = tf.constant(rng.normal(size=(batch_size, feature_size)).astype(np.float32))
  labels = (rng.random((batch_size, num_classes)) < 3.0 / num_classes).astype(np.float32)
  layout = SubclassLayout(num_classes, tuple(range(num_split)))
  unit_labels = np.zeros((batch_size, layout.num_units), np.float32)
  unit_labels[:, :num_classes] = labels
  steps = {
      "lr": _step_function(models.build_logistic(feature_size, num_classes),
                           losses.SigmoidCrossEntropy(), features, tf.constant(labels)),
      "cnn": _step_function(models.build_cnn(feature_size, num_classes),
                            losses.SigmoidCrossEntropy(), features, tf.constant(labels)),
      "scnn": _step_function(
          models.build_subclass_model("cnn", feature_size, layout.unit_to_class,
                                      num_classes)[0],
          losses.SubclassCrossEntropy(layout.unit_to_class.tolist(), from_logits=True),
          features,
          tf.constant(unit_labels)),
  }
  seconds = _median_step_seconds(steps, repeats, steps_per_repeat)
  rates = {name: batch_size / value for name, value in seconds.items()}
  cnn_hours = PAPER_EPOCHS * PAPER_TRAIN_VIDEOS / rates["cnn"] / 3600
  scnn_hours = PAPER_EPOCHS * PAPER_TRAIN_VIDEOS * scnn_example_factor / rates["scnn"] / 3600
  result = {"name": "training", "examples_per_second": rates,
            "ratio_cnn_vs_lr": rates["cnn"] / rates["lr"],
            "ratio_scnn_vs_cnn": rates["scnn"] / rates["cnn"],
            "paper_protocol_hours": {"cnn": cnn_hours, "scnn": scnn_hours},
            "scnn_example_factor": scnn_example_factor}
  print(f"training step, batch {batch_size}, {num_classes} classes ({layout.num_units} SCNN units)")
  for name, rate in rates.items():
    print(f"  {name:5s} {rate:10.0f} examples/s")
  print(f"  CNN / LR    {result['ratio_cnn_vs_lr']:.3f}x   SCNN / CNN  {result['ratio_scnn_vs_cnn']:.3f}x")
  print(f"  paper protocol (5 epochs x 3.9M videos) on this machine: CNN {cnn_hours:.0f} h, "
        f"SCNN {scnn_hours:.0f} h (x{scnn_example_factor} examples)")
  return result


if __name__ == "__main__":
  main()
