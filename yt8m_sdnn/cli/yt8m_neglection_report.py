"""Measures the paper's Figure-1 claim: does θ rank classes by their validation AP?

Trains the baseline for --num_epochs with the θ monitor attached (one θ vector every
--tau iterations over the whole run), scores --eval_data, and writes
TRAIN_DIR/neglection_report.json: per θ-window Spearman ρ(θ, validation AP), ρ(θ, class
frequency), the frequency-controlled ρ, and with --hard_classes_json how many planted
hard classes the top --top_fraction by θ holds. --plot also draws a PNG (needs
matplotlib). --neglection_score picks the score the tables rank by; the JSON's
`reports` holds every tracked score (and with --oracles the oracles). See
`yt8m_sdnn.experiments.neglection_report` for what each number means.

Example (synthetic shards from yt8m-synth; about 3 minutes on 2 CPU cores):
  yt8m-neglection-report --train_data=/tmp/synth/train --eval_data=/tmp/synth/validate \
      --train_dir=/tmp/theta --num_classes=100 --batch_size=128 --num_epochs=5 --tau=20 \
      --hard_classes_json=/tmp/synth/hard_classes.json --plot=/tmp/theta/theta_vs_ap.png
"""

import os

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts, models, training
from yt8m_sdnn.neglection import scores
from yt8m_sdnn.experiments import evidence, neglection_report
from yt8m_sdnn.experiments import plot

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("eval_data", None, "Validation shards for the per-class AP.")
flags.DEFINE_string("train_dir", None, "Receives neglection_report.json, the model and logs.")
flags.DEFINE_enum("model", "cnn", sorted(models.MODEL_REGISTRY), "Baseline model.")
flags.DEFINE_integer("num_epochs", 5, "Baseline training length (θ is measured throughout).")
flags.DEFINE_integer("tau", 20, "Iterations per θ window.")
flags.DEFINE_float("top_fraction", 0.1, "Share of classes selected by θ (paper: 10%).")
flags.DEFINE_string("hard_classes_json", None,
                    "Optional: yt8m-synth's OUTPUT/hard_classes.json, to count planted hard "
                    "classes among the selected.")
flags.DEFINE_string("plot", None, "Optional: write a Figure-1-style PNG here (needs matplotlib).")
flags.DEFINE_bool("oracles", False,
                  "Also report the oracle scores low_val_ap and ap_gap of the trained model "
                  "(scores the training shards in memory: videos × classes × 5 bytes).")
flags.DEFINE_integer("seed", None, "Seed of initialization, dropout and shuffling.")
flag_sets.define_neglection_score_flag(scores.TRACKED_SCORES)
flag_sets.define_data_flags()
flag_sets.define_cache_flag()
flag_sets.define_compute_flags()
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["train_data", "eval_data", "train_dir"])
# Checked when flags are parsed, so a missing matplotlib stops the run before training.
flags.register_validator("plot", lambda path: path is None or plot.matplotlib_available(),
                         message=plot.MATPLOTLIB_HINT)


def main(argv):
  del argv
  flag_sets.check_data_flags("train_data", "eval_data")
  train_config = training.TrainConfig(train_dir=FLAGS.train_dir, model=FLAGS.model,
                                      num_epochs=FLAGS.num_epochs, seed=FLAGS.seed,
                                      jit_compile=FLAGS.jit_compile)
  train_reader = flag_sets.reader_config(FLAGS.train_data, training=True, seed=FLAGS.seed,
                                        cached=True)
  eval_reader = flag_sets.reader_config(FLAGS.eval_data)
  hard_classes = (neglection_report.read_hard_classes(FLAGS.hard_classes_json, FLAGS.num_classes)
                  if FLAGS.hard_classes_json else None)
  payload = evidence.measure_neglection_evidence(
      train_config, train_reader, eval_reader, FLAGS.tau, hard_classes=hard_classes,
      top_fraction=FLAGS.top_fraction, score=FLAGS.neglection_score, oracles=FLAGS.oracles)
  path = os.path.join(FLAGS.train_dir, evidence.REPORT_FILE)
  artifacts.write_json(path, payload)
  logging.info("wrote %s", path)
  if FLAGS.plot:
    plot.plot_neglection_evidence(payload, FLAGS.plot)
    logging.info("wrote %s", FLAGS.plot)
  print(neglection_report.format_summary(payload))


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
