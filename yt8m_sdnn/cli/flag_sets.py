"""absl flags shared by the binaries, and their translation into library configs.

Flag names follow the YT8M starter code (`--train_data_pattern` becomes
`--train_data`, since it also takes directories and comma lists).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import numpy as np
from absl import app, flags, logging

from yt8m_sdnn import artifacts, distribute, models, training
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.data import class_counts, reader, scan
from yt8m_sdnn.data.files import resolve_files
from yt8m_sdnn.neglection import scores, selection
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE, MERGE_RULES

FLAGS = flags.FLAGS


def define_data_flags() -> None:
  """Flags that say how shards are read."""
  flags.DEFINE_list("feature_names", ["mean_rgb", "mean_audio"],
                    "Features to concatenate: mean_rgb[,mean_audio] for video-level shards, "
                    "rgb[,audio] with --frame_level.")
  flags.DEFINE_list("feature_sizes", ["1024", "128"], "Width of each feature, same order.")
  flags.DEFINE_integer("num_classes", 3862, "Label vocabulary size (2018: 3862, 2017: 4716).")
  flags.DEFINE_bool("frame_level", False,
                    "Read frame-level SequenceExample shards and mean-pool the frames.")
  flags.DEFINE_string("id_key", "id", "Video id key: id (2018 release) or video_id (2017).")
  flags.DEFINE_integer("batch_size", 512, "Videos per batch.", lower_bound=1)
  flags.DEFINE_bool("skip_corrupt", False,
                    "Skip unusable records (counted and logged) instead of stopping.")
  flags.DEFINE_bool("deterministic", False, "Reproducible element order in tf.data.")


def define_cache_flag() -> None:
  """--cache, for binaries that read the training shards more than once."""
  flags.DEFINE_string(
      "cache", None,
      "Decode the training (and --val_data) shards once, on the first read, and read the "
      "decoded features afterwards, shuffled as before: a directory (kept across runs; "
      "rebuilt when the shards or the data flags change) or 'memory' (this process). "
      "Pays when the shards are read more than once.")


def define_strategy_flag() -> None:
  """--strategy, for every binary that runs a stage under tf.distribute."""
  flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES),
                    "tf.distribute strategy: default (one device), mirrored (all local GPUs), "
                    "multi_worker (cluster from TF_CONFIG; run the same command on every "
                    "worker), tpu.")


def define_compute_flags() -> None:
  """--strategy, --mixed_precision and --jit_compile, for binaries that train."""
  define_strategy_flag()
  flags.DEFINE_enum("mixed_precision", "float32", list(distribute.PRECISIONS),
                    "Compute dtype policy; mixed_bfloat16 / mixed_float16 on GPUs and TPUs "
                    "(output layer, loss and θ stay float32).")
  flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")


def define_loss_flags() -> None:
  """--loss and its hyperparameters (`loss_registry.LossConfig`)."""
  defaults = loss_registry.LossConfig()
  flags.DEFINE_enum("loss", defaults.name, list(loss_registry.LOSS_NAMES),
                    "Training loss; with --subclass_plan its focusing or class weights go "
                    "into the subclass cross-entropy (eq. 11).")
  flags.DEFINE_float("focal_gamma", defaults.focal_gamma, "γ of --loss=focal.")
  flags.DEFINE_float("asl_gamma_positive", defaults.asl_gamma_positive,
                     "γ+ of --loss=asymmetric (ASL).")
  flags.DEFINE_float("asl_gamma_negative", defaults.asl_gamma_negative,
                     "γ- of --loss=asymmetric (ASL).")
  flags.DEFINE_float("asl_clip", defaults.asl_clip,
                     "Probability shift m of ASL's negatives.")
  flags.DEFINE_float("class_balance_beta", defaults.class_balance_beta,
                     "β of --loss=class_balanced (effective number of samples).")


def define_subclass_merge_flag(applies_to: str) -> None:
  """--subclass_merge: how a subclass model's class scores come from its units."""
  flags.DEFINE_enum(
      "subclass_merge", DEFAULT_MERGE, list(MERGE_RULES),
      f"How {applies_to} scores a split class from its subclass units: max (the "
      "paper's) or odds_sum (the class odds as the sum of the subclass odds, derived "
      "from eq. 11; README \"Which merge rule?\"). Early stopping and evaluation score it.")



def define_neglection_score_flag(allowed: tuple[str, ...] = scores.NEGLECTION_SCORES) -> None:
  """--neglection_score: which score selects the classes to split (`neglection.scores`)."""
  oracle_note = (" Oracles (low_val_ap, ap_gap) read the trained baseline on --val_data; "
                 "for comparison only." if set(scores.ORACLE_SCORES) & set(allowed) else "")
  flags.DEFINE_enum(
      "neglection_score", scores.DEFAULT_SCORE, list(allowed),
      "Which score ranks the classes: paper (eqs. 6-10), null_normalized (θ over its "
      "frequency-only expectation), frequency_residual (θ over the median θ of classes "
      "of similar frequency)." + oracle_note)


def define_selection_flags() -> None:
  """--selection, --max_coverage and the frequency band (`neglection.selection.SelectionRule`)."""
  flags.DEFINE_enum("selection", selection.SCORE, list(selection.SELECTIONS),
                    "Which classes are split: the highest-scored (score) or, as its control, "
                    "a random class of about the same training frequency for each "
                    "(matched_random, seeded by --seed).")
  flags.DEFINE_float("max_coverage", None,
                     "Largest share of the training videos with a selected class (each gets "
                     "one copy), counted exactly in a pass over --train_data; the selection is "
                     "the top classes by score that fit (and at most --top_fraction or "
                     "--top_k_classes of them). The paper's timings imply about 0.02.")
  flags.DEFINE_integer("min_train_positives", None,
                       "Only classes with at least this many training positives are selected.")
  flags.DEFINE_integer("max_train_positives", None,
                       "Only classes with at most this many training positives are selected.")


def selection_rule() -> selection.SelectionRule:
  """The `SelectionRule` of the selection flags."""
  return selection.SelectionRule(FLAGS.selection, FLAGS.max_coverage,
                                 FLAGS.min_train_positives, FLAGS.max_train_positives)


def define_neglection_window_flags() -> None:
  """How long θ is measured and how many classes it selects (yt8m-neglection, yt8m-sdnn)."""
  flags.DEFINE_float("fraction_of_epoch", 1 / 3,
                     "Share of an epoch over which θ is measured (paper: 1/3).")
  flags.DEFINE_integer("neglection_steps", None,
                       "Iterations over which θ is measured, instead of --fraction_of_epoch "
                       "(the shards repeat when it is more than an epoch).")
  flags.DEFINE_integer("tau", None, "Iterations per θ window (default: all iterations run).")
  flags.DEFINE_float("top_fraction", 0.1, "Share of classes to select and split (paper: 10%).")
  flags.DEFINE_integer("top_k_classes", None,
                       "Number of classes to select and split, instead of --top_fraction.")


def define_overwrite_flag() -> None:
  """--overwrite for binaries that train into --train_dir."""
  flags.DEFINE_bool("overwrite", False,
                    "Train afresh into a --train_dir that holds a finished model (replacing "
                    "it) or the backup of an unfinished run (discarding it). Without it a "
                    "finished model is refused and a backup is resumed, provided it was made "
                    "with the same settings.")


def check_no_finished_model(train_dir: str) -> None:
  """Refuses to train over a finished model in `train_dir` unless --overwrite.

  A directory with a backup is an unfinished run and is resumed instead.

  Raises:
    artifacts.ArtifactError: naming the model and the ways on.
  """
  model = os.path.join(train_dir, training.MODEL_FILE)
  if FLAGS.overwrite or not os.path.exists(model) or os.path.exists(
      os.path.join(train_dir, "backup", training.BACKUP_STATE_FILE)):
    return
  try:
    trained = training.load_model_config(train_dir).get("model", "a model")
  except artifacts.ArtifactError:
    trained = "a model"
  raise artifacts.ArtifactError(
      f"{model}: a finished model ({trained}) is already there; pass --overwrite to "
      "retrain and replace it, or choose another --train_dir")


def check_finite_float_flags() -> None:
  """Refuses --x=nan or --x=inf for every float flag (absl parses both as floats).

  Raises:
    ValueError: naming the flag.
  """
  for name in FLAGS:
    value = FLAGS[name].value
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"--{name}={value}: must be a finite number")


# The YT8M starter's names for the models it shares with this package.
STARTER_MODEL_NAMES = {"LogisticModel": "logistic", "MoeModel": "moe"}

# The YT8M starter's flag names, where the meaning is the same: starter name → ours.
STARTER_FLAG_ALIASES = {
    "train_data_pattern": "train_data",
    "eval_data_pattern": "eval_data",
    "input_data_pattern": "input_data",
    "frame_features": "frame_level",
    "base_learning_rate": "learning_rate",
}


class _ModelParser(flags.EnumParser):
  """--model: a registered name, or the starter's name of the same model."""

  def __init__(self):
    super().__init__(sorted(models.MODEL_REGISTRY) + sorted(STARTER_MODEL_NAMES))

  def parse(self, argument):
    return STARTER_MODEL_NAMES.get(argument, super().parse(argument))

  def flag_type(self):
    return "string enum"


def define_starter_aliases() -> None:
  """Each starter flag name whose flag this binary has, as an alias of it."""
  for starter, ours in STARTER_FLAG_ALIASES.items():
    if ours is not None and ours in FLAGS and starter not in FLAGS:
      flags.DEFINE_alias(starter, ours)


def define_training_flags(model_default: str = "cnn", early_stopping: bool = True) -> None:
  """The flags of `training.TrainConfig`, shared by every binary that trains."""
  defaults = training.TrainConfig(train_dir="")
  flags.DEFINE(_ModelParser(), "model", model_default,
               f"Model to train, one of {sorted(models.MODEL_REGISTRY)} (the YT8M starter's "
               f"{', '.join(sorted(STARTER_MODEL_NAMES))} are accepted too).")
  flags.DEFINE_integer("moe_num_mixtures", 2,
                       "Experts per class of --model=moe (the YT8M starter's default).")
  paper = training.recipe(training.PAPER_RECIPE).settings
  flags.DEFINE_float("learning_rate", None,
                     f"Initial learning rate (default {paper['learning_rate']}, the paper's; "
                     "with --val_data the model family's early-stopped recipe: "
                     + _recipe_text("learning_rate") + "). " + RECIPE_RULE)
  flags.DEFINE_float("learning_rate_decay", None,
                     f"Learning rate factor applied every epoch (default "
                     f"{paper['learning_rate_decay']}; with --val_data "
                     + _recipe_text("learning_rate_decay") + "; 1: constant).")
  flags.DEFINE_enum("optimizer", None, list(training.OPTIMIZERS),
                    f"Optimizer (default {paper['optimizer']}; with --val_data "
                    + _recipe_text("optimizer") + "); adamw applies --weight_decay decoupled.")
  flags.DEFINE_float("weight_decay", None,
                     f"λ: a pull of λ·w on every kernel, L2(λ/2) in the loss with adam and "
                     f"sgd, decoupled with adamw (default {paper['weight_decay']}; with "
                     "--val_data " + _recipe_text("weight_decay") + ").")
  flags.DEFINE_integer("seed", None, "Seed of initialization, dropout and shuffling.")
  flags.DEFINE_integer("log_every", 0,
                       "Steps between plain progress lines (epoch, step of the epoch and "
                       "its total, loss, examples/s, time left). 0: Keras' progress bar on "
                       "a terminal and, piped to a file, a line every 30 seconds.",
                       lower_bound=0)
  if early_stopping:
    flags.DEFINE_integer(
        "num_epochs", None,
        f"Passes over the training data; with --val_data a cap (default "
        f"{training.EARLY_STOPPED_NUM_EPOCHS}), without it the schedule (default "
        f"{paper['num_epochs']}, the paper's).")
    flags.DEFINE_string("val_data", None,
                        "Validation shards, used only to pick the epoch: after every epoch "
                        "the model is scored on them (GAP@--top_k), the best epoch's "
                        "weights are kept, and --patience epochs without improvement stop "
                        "training.")
    flags.DEFINE_integer("patience", defaults.patience,
                         "With --val_data: epochs without a better validation GAP before "
                         "training stops.")


# The rule, stated in --help and applied by `optimizer_settings` and `num_epochs`.
_PAPER = training.recipe(training.PAPER_RECIPE).settings
RECIPE_RULE = (f"Recipes: without --val_data the paper's ({_PAPER['optimizer']}, "
               f"--learning_rate {_PAPER['learning_rate']:g} decayed "
               f"{_PAPER['learning_rate_decay']:g} an epoch, --weight_decay "
               f"{_PAPER['weight_decay']:g}, {_PAPER['num_epochs']} epochs); with --val_data "
               "the model family's early-stopped recipe (values above, --num_epochs a cap "
               f"of {training.EARLY_STOPPED_NUM_EPOCHS}). A flag you give wins; the run "
               "logs one line naming its recipe and every value that is not the paper's, "
               "and records it in train_result.json.")


def _recipe_text(key: str) -> str:
  return ", ".join(f"{name} {training.recipe('early-stopped', name).settings[key]}"
                   for name in sorted(training.EARLY_STOPPED_RECIPES))


def _early_stopped() -> bool:
  return bool(FLAGS["val_data"].value) if "val_data" in FLAGS else False


def recipe() -> training.Recipe:
  """The recipe this run's defaults come from (`training.recipe_for`)."""
  return training.recipe_for(FLAGS.model, _early_stopped())


def optimizer_settings() -> dict:
  """optimizer, learning_rate, learning_rate_decay, weight_decay: flags over defaults.

  The defaults are the paper's, or with --val_data the model family's early-stopped
  recipe (`training.EARLY_STOPPED_RECIPES`).
  """
  settings = training.default_settings(FLAGS.model, _early_stopped())
  for key in settings:
    if FLAGS[key].value is not None:
      settings[key] = FLAGS[key].value
  return settings


def num_epochs() -> int:
  """--num_epochs, or its default, which depends on whether --val_data is given."""
  if FLAGS.num_epochs is not None:
    return FLAGS.num_epochs
  return recipe().settings["num_epochs"]


def train_config(train_dir: str, **overrides) -> training.TrainConfig:
  """A `TrainConfig` from the training (and loss, compute) flags; `overrides` win."""
  values = dict(
      train_dir=train_dir, model=FLAGS.model, **optimizer_settings(), seed=FLAGS.seed,
      log_every=FLAGS.log_every,
      model_options={"num_mixtures": FLAGS.moe_num_mixtures} if FLAGS.model == "moe" else {})
  if "val_data" in FLAGS:
    values.update(num_epochs=num_epochs(), patience=FLAGS.patience)
  if "loss" in FLAGS:
    values["loss"] = loss_config()
  if "jit_compile" in FLAGS:
    values["jit_compile"] = FLAGS.jit_compile
  if "subclass_merge" in FLAGS:
    values["subclass_merge"] = FLAGS.subclass_merge
  values.update(overrides)
  chosen = recipe()
  values["recipe"] = chosen.describe(
      {key: values[key] for key in training.RECIPE_KEYS if key in values})
  config = training.TrainConfig(**values)
  logging.info("%s", config.recipe)
  return config


def check_data_flags(*names: str) -> None:
  """Resolves every given data flag before any work starts; refuses overlapping splits.

  A mistyped pattern is reported at once, naming the flag, rather than after a whole
  training run. Validation shards choose the epoch, so they must be neither training
  nor test shards: an overlap is refused, naming the shared files.

  Raises:
    FileNotFoundError: a pattern matches no file.
    ValueError: --val_data shares files with --train_data or --eval_data.
  """
  files = {}
  for name in names:
    if FLAGS[name].value:
      try:
        files[name] = set(resolve_files(FLAGS[name].value))
      except FileNotFoundError as error:
        raise FileNotFoundError(f"--{name}: {error}") from None
      except ValueError as error:  # a shard named twice
        raise ValueError(f"--{name}: {error}") from None
  for other in ("train_data", "eval_data"):
    shared = files.get("val_data", set()) & files.get(other, set())
    if shared:
      raise ValueError(f"--val_data and --{other} share {len(shared)} files (e.g. "
                       f"{sorted(shared)[0]}); validation shards must be used only to "
                       "choose the epoch")


def val_reader_config() -> reader.ReaderConfig | None:
  """The validation shards' `ReaderConfig`, or None without --val_data."""
  return reader_config(FLAGS.val_data, cached=True) if FLAGS.val_data else None


def loss_config() -> loss_registry.LossConfig:
  """A `LossConfig` from the loss flags."""
  return loss_registry.LossConfig(
      name=FLAGS.loss, focal_gamma=FLAGS.focal_gamma, asl_gamma_positive=FLAGS.asl_gamma_positive,
      asl_gamma_negative=FLAGS.asl_gamma_negative, asl_clip=FLAGS.asl_clip,
      class_balance_beta=FLAGS.class_balance_beta)


def reader_config(data_pattern: str, training: bool = False, cached: bool = False,
                  **overrides) -> reader.ReaderConfig:
  """A `ReaderConfig` from the data flags; `overrides` win over flags.

  `cached`: shards read more than once, which take --cache where it is defined.
  """
  values = dict(
      data_pattern=data_pattern, num_classes=FLAGS.num_classes,
      feature_names=tuple(FLAGS.feature_names),
      feature_sizes=tuple(int(size) for size in FLAGS.feature_sizes),
      frame_level=FLAGS.frame_level, id_key=FLAGS.id_key, batch_size=FLAGS.batch_size,
      training=training, skip_corrupt=FLAGS.skip_corrupt, deterministic=FLAGS.deterministic,
      cache=FLAGS.cache if cached and "cache" in FLAGS else None)
  values.update(overrides)
  return reader.ReaderConfig(**values)


# Vocabulary sizes of the YT8M releases (--num_classes).
RELEASE_NUM_CLASSES = {"2018": 3862, "2017": 4716}


def warn_about_num_classes(config: reader.ReaderConfig) -> None:
  """Warns when the labels of the first shard suggest another --num_classes.

  One cheap pass over the first file: labels beyond --num_classes are refused by the
  reader (naming the flag); far fewer classes than --num_classes (the largest label id
  seen below half of it), or 2018 ids under the 2017 vocabulary size, get one warning.
  """
  first = resolve_files(config.data_pattern)[0]
  counts, num_videos = class_counts.count_class_positives(
      dataclasses.replace(config, data_pattern=first, cache=None))
  seen = np.flatnonzero(counts)
  if not seen.size:
    return
  largest = int(seen.max())
  release_2018 = RELEASE_NUM_CLASSES["2018"]
  if config.num_classes == RELEASE_NUM_CLASSES["2017"] and largest < release_2018:
    logging.warning("--num_classes=%d is the 2017 vocabulary, but the labels of %s (%d videos) "
                    "stay below %d: 2018 shards have %d classes (--num_classes=%d).",
                    config.num_classes, first, num_videos, release_2018, release_2018,
                    release_2018)
  elif largest < config.num_classes // 2:
    logging.warning("--num_classes=%d, but the largest label id in %s (%d videos) is %d: "
                    "is --num_classes right for these shards?", config.num_classes, first,
                    num_videos, largest)


def report_skipped(config: reader.ReaderConfig) -> None:
  """With --skip_corrupt, counts what will be skipped (one extra read of the shards)."""
  if config.skip_corrupt:
    report = scan.scan_shards(config)
    logging.warning("--skip_corrupt: %d of %d records unusable and skipped%s", report.num_bad,
                    report.num_records, "".join(f"\n  {p}" for p in report.problems[:20]))


def reader_config_for_model(model_config: dict, data_pattern: str,
                            **overrides) -> reader.ReaderConfig:
  """A `ReaderConfig` that reads data the way the saved model was trained on."""
  values = dict(
      data_pattern=data_pattern, num_classes=model_config["num_classes"],
      feature_names=tuple(model_config["feature_names"]),
      feature_sizes=tuple(model_config["feature_sizes"]),
      frame_level=model_config["frame_level"], id_key=model_config["id_key"],
      batch_size=FLAGS.batch_size, skip_corrupt=FLAGS.skip_corrupt,
      deterministic=FLAGS.deterministic)
  values.update(overrides)
  return reader.ReaderConfig(**values)


def replace(config, **changes):
  """`dataclasses.replace`, re-exported so binaries need one import."""
  return dataclasses.replace(config, **changes)


def define_scoring_flags(top_k_help: str, deterministic_default: bool = False,
                         deterministic_help: str = "Reproducible element order in tf.data."
                         ) -> None:
  """--top_k, --batch_size, --skip_corrupt, --deterministic of the binaries that score a
  trained model (yt8m-eval, yt8m-predict): one definition, one set of ranges.

  Out-of-range values (--top_k=0, --batch_size=0) are refused when the flags are
  parsed, before any model is loaded.
  """
  flags.DEFINE_integer("top_k", 20, top_k_help, lower_bound=1)
  flags.DEFINE_integer("batch_size", 512, "Videos per batch.", lower_bound=1)
  flags.DEFINE_bool("skip_corrupt", False,
                    "Skip unusable records (counted and logged) instead of stopping.")
  flags.DEFINE_bool("deterministic", deterministic_default, deterministic_help)
