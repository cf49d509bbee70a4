"""Evaluates a trained model with the YT8M challenge metrics; writes eval_metrics.json.

With --strategy=multi_worker each worker scores its share of the shards and the
metric states are merged; the chief writes the file.

Example:
  yt8m-eval --eval_data=/data/yt8m/validate --train_dir=/tmp/cnn
"""

import json
import os

from absl import flags

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts, distribute, evaluation, model_files, training

FLAGS = flags.FLAGS
flags.DEFINE_string("eval_data", None,
                    "Evaluation shards: a directory (its *.tfrecord files), glob or comma list.")
flags.DEFINE_string("train_dir", None, "Holds model.keras and model_config.json (yt8m-train).")
flag_sets.define_scoring_flags("k of GAP@k and of the per-class top-k lists of mAP.")
flag_sets.define_strategy_flag()
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["eval_data", "train_dir"])


def main(argv):
  del argv
  flag_sets.check_data_flags("eval_data")  # a mistyped pattern fails before any work
  model, model_config = model_files.load_trained(FLAGS.train_dir)
  if distribute.is_chief():  # it writes eval_metrics.json there after the pass
    artifacts.check_output_file(os.path.join(FLAGS.train_dir, "eval_metrics.json"),
                                "--train_dir")
  reader_config = flag_sets.reader_config_for_model(model_config, FLAGS.eval_data)
  flag_sets.report_skipped(reader_config)
  results = evaluation.evaluate(model, reader_config, top_k=FLAGS.top_k)
  if distribute.is_chief():  # with several workers, every one holds the merged metrics
    artifacts.write_json(os.path.join(FLAGS.train_dir, "eval_metrics.json"), results)
    trained = training.load_train_result_record(FLAGS.train_dir)
    evaluation.write_summaries(results, os.path.join(FLAGS.train_dir, "logs", "eval"),
                               step=trained.get("steps", 0) if trained else 0, top_k=FLAGS.top_k)
  print(json.dumps(results, indent=2))


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
