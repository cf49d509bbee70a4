"""The main job on an embedded default: fresh synthetic shards, then the comparison table.

`make demo` runs this with no arguments: it writes synthetic YT8M shards with planted
hard classes into --output_dir and runs the early-stopped protocol on them: the first
of the four `validate` shards is the validation shard (epoch choice), the other three
the test shards, scored once. Rows: the --model baseline, θ over --neglection_steps,
Algorithm 1's plan, its subclass version (SDNN) and the two ablations, each trained
to its best validation epoch; the table shows each row's best epoch.
About five minutes on 2 CPU cores.
"""

import os

from absl import flags

from yt8m_sdnn.cli import flag_sets, runner

from yt8m_sdnn import training
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.data import reader, synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_output", "Receives the shards and every stage.")
flags.DEFINE_integer("num_classes", 100, "Classes of the synthetic data.")
flags.DEFINE_integer("num_train", 8000, "Synthetic training videos.")
flags.DEFINE_integer("num_validate", 2000, "Synthetic validation videos.")
flags.DEFINE_enum("model", "logistic", ["logistic", "moe", "cnn"], "Model family of the rows.")
flags.DEFINE_integer("num_epochs", 60, "Epoch cap (early stopping usually ends sooner).")
flags.DEFINE_integer("patience", 3, "Epochs without a better validation GAP.")
flags.DEFINE_float("learning_rate", 0.03, "Adam's learning rate.")
flags.DEFINE_integer("neglection_steps", 60, "Iterations over which θ is measured.")
flags.DEFINE_integer("batch_size", 128, "Videos per batch (the paper's 512 suits 3.9M videos).")
flags.DEFINE_integer("seed", 0, "Seed of the data and of training.")
flags.DEFINE_list("stages", ["baseline", "sdnn", "split_only", "augment_only"],
                  f"Model rows, among {list(pipeline.ROW_STAGES)}.")

def main(argv):
  del argv
  data_dir = os.path.join(FLAGS.output_dir, "synthetic")
  summary = synthetic.generate(synthetic.SynthConfig(
      output_dir=data_dir, num_classes=FLAGS.num_classes, num_train=FLAGS.num_train,
      num_validate=FLAGS.num_validate, num_shards=4, seed=FLAGS.seed))
  train_reader = reader.ReaderConfig(
      os.path.join(data_dir, "train"), num_classes=FLAGS.num_classes,
      batch_size=FLAGS.batch_size, training=True, seed=FLAGS.seed)
  validate = os.path.join(data_dir, "validate")
  val_reader = reader.ReaderConfig(os.path.join(validate, "validate0000-of-0004.tfrecord"),
                                   num_classes=FLAGS.num_classes, batch_size=512)
  eval_reader = reader.ReaderConfig(
      ",".join(os.path.join(validate, f"validate{i:04d}-of-0004.tfrecord") for i in (1, 2, 3)),
      num_classes=FLAGS.num_classes, batch_size=512)
  config = pipeline.PipelineConfig(
      work_dir=os.path.join(FLAGS.output_dir, "runs"), train_reader=train_reader,
      eval_reader=eval_reader, val_reader=val_reader, overwrite=True,
      stages=tuple(FLAGS.stages), model=FLAGS.model, neglection_steps=FLAGS.neglection_steps,
      train=training.TrainConfig(
          train_dir="", num_epochs=FLAGS.num_epochs, seed=FLAGS.seed, patience=FLAGS.patience,
          learning_rate=FLAGS.learning_rate, learning_rate_decay=1.0,
          model_options={"num_mixtures": 2} if FLAGS.model == "moe" else {}))
  comparison = pipeline.run(config)
  print(f"\nSynthetic YT8M: {FLAGS.num_train} training videos, {FLAGS.num_validate} held "
        f"out (1 validation shard, 3 test shards), {FLAGS.num_classes} classes, hard classes "
        f"{summary['hard_classes']}; every row early-stopped on validation, scored on test\n")
  print(pipeline.format_table(comparison))
  if "selected" in comparison:
    hard = set(summary["hard_classes"])
    print(f"\nSplit classes (most neglected first): {comparison['selected']}; planted hard "
          f"classes among them: {sorted(hard.intersection(comparison['selected']))}")
  print(f"\nArtifacts: {FLAGS.output_dir}/runs/comparison.json")


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
