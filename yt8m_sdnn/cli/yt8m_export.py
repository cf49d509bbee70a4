"""Exports a trained model as a TensorFlow SavedModel for serving.

The SavedModel's "serving_default" signature (also "serve") takes "features", float32
[batch, feature_size] (the model config's features concatenated: 2018 release
mean_rgb then mean_audio, 1152 wide; each modality is L2-normalized inside, as the
reader does), and returns "probabilities", float32 [batch, num_classes]. Loading it
needs only TensorFlow (`tf.saved_model.load`), not this package. See
`yt8m_sdnn.export`.

Example:
  yt8m-export --train_dir=/tmp/cnn --output=/tmp/cnn_saved_model
"""

from absl import flags

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import export, model_files

FLAGS = flags.FLAGS
flags.DEFINE_string("train_dir", None, "Holds model.keras and model_config.json (yt8m-train).")
flags.DEFINE_string("output", None,
                    "SavedModel directory to create (written beside it, then renamed).")
flags.DEFINE_bool("overwrite", False,
                  "Replace an existing SavedModel at --output (only a SavedModel directory "
                  "or an empty one is ever replaced).")
flags.mark_flags_as_required(["train_dir", "output"])


def main(argv):
  del argv
  output = export.export_saved_model(FLAGS.train_dir, FLAGS.output, overwrite=FLAGS.overwrite)
  config = model_files.load_model_config(FLAGS.train_dir)
  print(f"{output}: SavedModel, signature {export.SIGNATURE_NAME!r}: "
        f"{export.INPUT_NAME!r} float32 [batch, {sum(config['feature_sizes'])}] -> "
        f"{export.OUTPUT_NAME!r} float32 [batch, {config['num_classes']}]")


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
