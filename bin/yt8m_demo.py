"""The main job on an embedded default: fresh synthetic shards, then the comparison table.

`make demo` runs this with no arguments: it writes synthetic YT8M shards with planted
hard classes into --output_dir, runs the whole SDNN pipeline on them (LR and CNN
baselines, θ over a third of an epoch, Algorithm 1's plan, the subclass CNN, the CNN
given the SCNN's number of steps) and prints a table like the paper's Table 2.
About three minutes on 2 CPU cores.
"""

import os

from absl import flags

from bin import flag_sets

from yt8m_sdnn import pipeline, training
from yt8m_sdnn.data import reader, synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_output", "Receives the shards and every stage.")
flags.DEFINE_integer("num_classes", 100, "Classes of the synthetic data.")
flags.DEFINE_integer("num_train", 8000, "Synthetic training videos.")
flags.DEFINE_integer("num_validate", 2000, "Synthetic validation videos.")
flags.DEFINE_integer("num_epochs", 5, "Training epochs of every model.")
flags.DEFINE_integer("batch_size", 128, "Videos per batch (the paper's 512 suits 3.9M videos).")
flags.DEFINE_integer("seed", 0, "Seed of the data and of training.")
flags.DEFINE_list("stages", list(pipeline.DEFAULT_STAGES),
                  f"Model rows, among {list(pipeline.ROW_STAGES)}.")


def main(argv):
  del argv
  data_dir = os.path.join(FLAGS.output_dir, "synthetic")
  summary = synthetic.generate(synthetic.SynthConfig(
      output_dir=data_dir, num_classes=FLAGS.num_classes, num_train=FLAGS.num_train,
      num_validate=FLAGS.num_validate, seed=FLAGS.seed))
  train_reader = reader.ReaderConfig(
      os.path.join(data_dir, "train"), num_classes=FLAGS.num_classes,
      batch_size=FLAGS.batch_size, training=True, seed=FLAGS.seed)
  eval_reader = reader.ReaderConfig(
      os.path.join(data_dir, "validate"), num_classes=FLAGS.num_classes, batch_size=512)
  config = pipeline.PipelineConfig(
      work_dir=os.path.join(FLAGS.output_dir, "runs"), train_reader=train_reader,
      eval_reader=eval_reader, overwrite=True, stages=tuple(FLAGS.stages),
      train=training.TrainConfig(train_dir="", num_epochs=FLAGS.num_epochs, seed=FLAGS.seed))
  comparison = pipeline.run(config)
  print(f"\nSynthetic YT8M: {FLAGS.num_train} training / {FLAGS.num_validate} validation "
        f"videos, {FLAGS.num_classes} classes, hard classes {summary['hard_classes']}\n")
  print(pipeline.format_table(comparison))
  if "selected" in comparison:
    hard = set(summary["hard_classes"])
    print(f"\nSplit classes (most neglected first): {comparison['selected']}; planted hard "
          f"classes among them: {sorted(hard.intersection(comparison['selected']))}")
  print(f"\nArtifacts: {FLAGS.output_dir}/runs/comparison.json")


def run():
  flag_sets.run_main(main)


if __name__ == "__main__":
  run()
