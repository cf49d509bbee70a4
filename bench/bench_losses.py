"""Subclass cross-entropy (eq. 11) vs Keras' binary cross-entropy: forward + backward cost.

The paper's SCNN (section 3.3): 386 of 3,862 classes split in two, so 4,248 output
units, batch 512. Times one compiled step (loss and its gradient with respect to the
logits) of `SubclassCrossEntropy` against `keras.losses.BinaryCrossentropy(
from_logits=True)` on the same 4,248 units, one step of each in turn, median of 200
steps each, same run. Labels are an argument of the compiled step, as they are in training: as a
captured constant, TensorFlow would fold the class-label computation away.

Reports tf.function graphs (what Keras runs on CPUs) as the ratio, and XLA
(`jit_compile=True`, what Keras uses on GPUs) beside it. Takes about 30 s.

  python -m bench.bench_losses
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from yt8m_sdnn import losses
from yt8m_sdnn.subclass.layout import SubclassLayout


def synthetic_batch(layout: SubclassLayout, batch_size: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(labels, logits): ~3 classes a video, a split class's label on a random subclass."""
  rng = np.random.default_rng(seed)
  labels = np.zeros((batch_size, layout.num_units), np.float32)
  classes = rng.integers(0, layout.num_classes, (batch_size, 3))
  units = classes.copy()
  split_index = {class_id: index for index, class_id in enumerate(layout.split_classes)}
  for (video, slot), class_id in np.ndenumerate(classes):
    if class_id in split_index and rng.random() < 0.5:
      units[video, slot] = layout.subclass_unit(split_index[class_id], 1)
  labels[np.arange(batch_size)[:, None], units] = 1.0
  logits = rng.normal(-3.0, 2.0, (batch_size, layout.num_units)).astype(np.float32)
  return labels, logits


def _compiled_step(loss_fn, logits: tf.Variable, jit_compile: bool):
  @tf.function(jit_compile=jit_compile)
  def step(labels):
    with tf.GradientTape() as tape:
      value = loss_fn(labels, logits)
    return value, tape.gradient(value, logits)
  return step


def _interleaved_step_seconds(steps_by_name: dict, labels, repeats: int) -> dict:
  """Median seconds of one step of each, timed in turns so that load bursts hit all."""
  times = {name: [] for name in steps_by_name}
  names = list(steps_by_name)
  for repeat in range(repeats):
    for name in names if repeat % 2 else names[::-1]:
      start = time.perf_counter()
      _, gradient = steps_by_name[name](labels)
      gradient.numpy()  # wait for the result
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(values)) for name, values in times.items()}


def main(batch_size: int = 512, num_classes: int = 3862, num_split: int = 386,
         repeats: int = 200) -> dict:
  """Times both losses; the ratio is SCE / BCE in tf.function graphs (≤ 1.05 wanted)."""
  split = np.random.default_rng(1).choice(num_classes, num_split, replace=False)
  layout = SubclassLayout(num_classes, tuple(int(c) for c in split))
  labels, initial_logits = synthetic_batch(layout, batch_size)
  labels = tf.constant(labels)
  logits = tf.Variable(initial_logits)
  candidates = {"sce": losses.SubclassCrossEntropy(layout.unit_to_class, from_logits=True),
                "bce": keras.losses.BinaryCrossentropy(from_logits=True)}
  seconds = {}
  for mode, jit_compile in (("graph", False), ("xla", True)):
    steps_by_loss = {name: _compiled_step(loss, logits, jit_compile)
                     for name, loss in candidates.items()}
    for step in steps_by_loss.values():
      step(labels)  # trace and compile
    seconds[mode] = _interleaved_step_seconds(steps_by_loss, labels, repeats)
  ratios = {mode: times["sce"] / times["bce"] for mode, times in seconds.items()}
  print(f"loss forward + backward, batch {batch_size}, {layout.num_units} units "
        f"({num_split} of {num_classes} classes split in two), median of {repeats} steps")
  print(f"  {'':28s} {'graph ms':>9s} {'XLA ms':>9s}")
  for name, label in (("bce", "keras BinaryCrossentropy"), ("sce", "SubclassCrossEntropy")):
    print(f"  {label:28s} {1e3 * seconds['graph'][name]:9.3f} {1e3 * seconds['xla'][name]:9.3f}")
  print(f"  {'ratio SCE / BCE':28s} {ratios['graph']:9.3f} {ratios['xla']:9.3f}")
  return {"name": "sce_vs_bce", "ratio": ratios["graph"], "xla_ratio": ratios["xla"],
          "sce_seconds": seconds["graph"]["sce"], "bce_seconds": seconds["graph"]["bce"],
          "sce_xla_seconds": seconds["xla"]["sce"], "bce_xla_seconds": seconds["xla"]["bce"],
          "batch_size": batch_size, "num_units": layout.num_units}


if __name__ == "__main__":
  main()
