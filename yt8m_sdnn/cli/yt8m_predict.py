"""Writes the challenge submission CSV (VideoId,LabelConfidencePairs) for shards.

Works on test shards, whose records have no labels. With --vocabulary it also prints
the class names of the top predictions of the first videos.

Example:
  yt8m-predict --input_data=/data/yt8m/test --train_dir=/tmp/cnn --output_file=/tmp/sub.csv
"""

import csv
import io

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts, model_files, prediction
from yt8m_sdnn.data import vocabulary

FLAGS = flags.FLAGS
flags.DEFINE_string("input_data", None,
                    "Shards to score: a directory (its *.tfrecord files), glob or comma list.")
flags.DEFINE_string("train_dir", None, "Holds model.keras and model_config.json (yt8m-train).")
flags.DEFINE_string("output_file", None, "The CSV to write.")
flag_sets.define_scoring_flags("Predictions per video.", deterministic_default=True,
                               deterministic_help="Keep the CSV in shard order.")
flags.DEFINE_string("vocabulary", None, "vocabulary.csv (2018) or label_names.csv (2017).")
flags.DEFINE_integer("show_videos", 5, "With --vocabulary: videos whose top classes to print.",
                     lower_bound=0)
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["input_data", "train_dir", "output_file"])


def _print_named(path: str, names: dict, count: int, top: int = 5) -> None:
  with open(path, encoding="utf-8") as stream:
    rows = list(csv.reader(io.StringIO(stream.read())))[1:count + 1]
  for video_id, pairs in rows:
    values = pairs.split()
    named = [f"{names.get(int(label), label)} ({float(score):.3f})"
             for label, score in zip(values[0:2 * top:2], values[1:2 * top:2])]
    print(f"{video_id}: " + "; ".join(named))


def main(argv):
  del argv
  flag_sets.check_data_flags("input_data")
  if FLAGS.vocabulary:
    vocabulary.check_readable(FLAGS.vocabulary)
  artifacts.check_output_file(FLAGS.output_file, "--output_file")
  model, model_config = model_files.load_trained(FLAGS.train_dir)
  names = vocabulary.load_class_names(FLAGS.vocabulary) if FLAGS.vocabulary else None
  if names and max(names) + 1 != model_config["num_classes"]:
    logging.warning("--vocabulary %s names %d classes, but the model was trained with "
                    "--num_classes=%d: the names may belong to another release.",
                    FLAGS.vocabulary, max(names) + 1, model_config["num_classes"])
  reader_config = flag_sets.reader_config_for_model(
      model_config, FLAGS.input_data, include_ids=True, require_labels=False)
  flag_sets.report_skipped(reader_config)
  count = prediction.write_submission(model, reader_config, FLAGS.output_file, top_k=FLAGS.top_k)
  print(f"wrote {count} videos to {FLAGS.output_file}")
  if names is not None:
    _print_named(FLAGS.output_file, names, FLAGS.show_videos)


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
