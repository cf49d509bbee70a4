"""Converged evidence: does SDNN help when every row is trained to its best epoch?

Protocol (README "Converged evidence"), on the 100 real 2018 validate shards split by
shard, once:
  train      validate0000-0049, validate0100-0119  (70 shards)
  validation validate0120-0129                      (10 shards: epoch and setting choice)
  test       validate0130-0149                      (20 shards: scored once per row)
1. `tune`: on seed 0, the baseline and the SDNN row each train once per setting of the
   grid (`--grid`, learning rate × weight decay), early-stopped on the validation
   shards and scored on the validation shards only; each picks the setting of its
   best validation GAP. Same grid, same budget for both.
2. `rows`: seed 0's baseline and SDNN rows are the tuning's rows of their chosen
   setting (same seed, setting and shards), scored once on the test shards instead of
   trained again. For every seed (in waves of two rows over all seeds: SDNN and the
   baseline first, then the ablations, then the ASL pair), every row trains with its
   setting (the baseline's for `baseline` and `baseline:asymmetric`, the SDNN row's for
   `sdnn`, its ablations and `sdnn:asymmetric`), early-stopped on validation, then
   scored once on the test shards.
3. Summary: test GAP@20, Hit@1, PERR, mAP (mean ± std over seeds), best epoch and
   steps, paired per-seed GAP differences and a paired bootstrap 95% interval over
   test videos for each (per seed, and for the seed-mean difference).

Every stage is resumable (finished rows are skipped; a killed row resumes from its
backup). Long: about 3-5 minutes per logistic row on 2 CPU cores.

  python -m bench.evidence_converged --model=logistic --output=/tmp/converged_lr
  python -m bench.evidence_converged --model=logistic --output=/tmp/converged_lr --summarize_only
"""

from __future__ import annotations

import json
import os
import shutil

from absl import app, flags, logging

from bench import real_data
from yt8m_sdnn import artifacts, training
from yt8m_sdnn.experiments import bootstrap
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.experiments import seed_summary
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE, MERGE_RULES

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "/tmp/evidence_converged", "Work directory.")
flags.DEFINE_enum("model", "logistic", ["logistic", "moe", "cnn"], "Model family.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the rows.")
flags.DEFINE_list("stages", ["sdnn", "split_only", "augment_only", "sdnn:asymmetric",
                             "baseline", "baseline:asymmetric"], "Rows.")
flags.DEFINE_list("grid", ["adam/0.1/0", "adam/0.03/0", "adam/0.1/0/0.9", "adam/0.1/0.0005/0.9",
                          "adamw/0.1/0.0005/0.9"],
                  "Settings tried by the baseline and the SDNN row: "
                  "OPTIMIZER/LEARNING_RATE/WEIGHT_DECAY[/LEARNING_RATE_DECAY per epoch, "
                  "default 1].")
flags.DEFINE_integer("patience", 4, "Epochs without a better validation GAP.")
flags.DEFINE_integer("num_epochs", 200, "Epoch cap.")
flags.DEFINE_integer("neglection_steps", 250, "Iterations of the θ stage.")
flags.DEFINE_integer("batch_size", 512, "Batch size (the paper's).")
flags.DEFINE_integer("num_resamples", 1000, "Bootstrap resamples.")
flags.DEFINE_bool("summarize_only", False, "Train nothing; summarize what finished.")
flags.DEFINE_string("cache", None,
                    "--cache of the training and validation shards: 'memory' decodes them "
                    "once for the whole process (the CNN's CPU run), or a directory.")
flags.DEFINE_enum("subclass_merge", DEFAULT_MERGE, list(MERGE_RULES),
                  "Merge rule of the split rows (sdnn, split_only): the epoch choice, the "
                  "tuning and the test scores use it. Rows trained with another rule are "
                  "refused: give another --output.")

TRAIN, VALIDATION, TEST = real_data.TRAIN, real_data.VALIDATION, real_data.TEST
DIFFERENCES = (("sdnn", "baseline"), ("split_only", "baseline"), ("augment_only", "baseline"),
               ("sdnn:asymmetric", "baseline:asymmetric"), ("baseline:asymmetric", "baseline"))


def parse_setting(text: str) -> dict:
  """A `--grid` entry, OPTIMIZER/LEARNING_RATE/WEIGHT_DECAY[/DECAY], as TrainConfig fields."""
  optimizer, learning_rate, weight_decay, *decay = text.split("/")
  return dict(optimizer=optimizer, learning_rate=float(learning_rate),
              weight_decay=float(weight_decay),
              learning_rate_decay=float(decay[0]) if decay else 1.0)


def pipeline_config(work_dir: str, seed: int, setting: dict, stages,
                    tuning: bool) -> pipeline.PipelineConfig:
  """The protocol's run of `stages` for `seed` (this split, θ window, flags) with `setting`.

  `tuning` scores on the validation shards instead of the test shards.
  """
  train_reader = reader.ReaderConfig(real_data.pattern(TRAIN), batch_size=FLAGS.batch_size,
                                     training=True, seed=seed, cache=FLAGS.cache)
  val_reader = reader.ReaderConfig(real_data.pattern(VALIDATION), batch_size=1024,
                                   cache=FLAGS.cache)
  # Tuning never sees the test shards: its rows are "scored" on validation.
  eval_reader = (val_reader if tuning
                 else reader.ReaderConfig(real_data.pattern(TEST), batch_size=1024))
  options = {"num_mixtures": 2} if FLAGS.model == "moe" else {}
  train = training.TrainConfig(train_dir="", num_epochs=FLAGS.num_epochs, seed=seed,
                               patience=FLAGS.patience, model_options=options,
                               subclass_merge=FLAGS.subclass_merge, **setting)
  return pipeline.PipelineConfig(
      work_dir=work_dir, train_reader=train_reader, eval_reader=eval_reader,
      val_reader=val_reader, train=train, model=FLAGS.model, stages=tuple(stages),
      neglection_steps=FLAGS.neglection_steps)


def _tune() -> dict:
  """Each of baseline and sdnn: the grid setting with the best validation GAP (seed 0)."""
  chosen = {}
  for row in ("baseline", "sdnn"):
    scores = {}
    for text in FLAGS.grid:
      work_dir = os.path.join(FLAGS.output, "tune", text.replace("/", "_"))
      if not FLAGS.summarize_only:
        pipeline.run(pipeline_config(work_dir, 0, parse_setting(text), [row], tuning=True))
      path = os.path.join(pipeline.stage_dir(work_dir, row), training.VALIDATION_FILE)
      if os.path.exists(path):
        scores[text] = artifacts.read_json(path)["best_val_gap"]
    if scores:
      chosen[row] = max(scores, key=scores.get)
      logging.info("tune %s: %s -> %s", row, scores, chosen[row])
    chosen[f"{row}_validation_gap"] = scores
  return chosen


def _reuse_tuning(chosen: dict, work_dir: str) -> None:
  """Seed 0's `baseline` and `sdnn` rows start from the tuning's rows of their setting.

  The tuning trained them with the same seed, setting and training shards (SDNN's with
  its own θ and partition, measured with SDNN's setting, as the rows stage would) and
  scored them on the validation shards only. Their trained models are copied without
  any result, so the pipeline scores them once on the test shards (a trained row is
  evaluated, not trained again). A row already in `work_dir` is left as it is; one
  trained with another setting than the chosen one is refused by the pipeline
  (`training.check_finished_settings`): delete it to train it with the chosen setting.
  """
  for row in ("baseline", "sdnn"):
    if row not in chosen:
      continue
    tuned = os.path.join(FLAGS.output, "tune", chosen[row].replace("/", "_"))
    if training.load_train_result_record(pipeline.stage_dir(tuned, row)) is None or not (
        os.path.exists(os.path.join(pipeline.stage_dir(tuned, row), training.MODEL_FILE))):
      continue  # not trained there (or its model was not kept): the rows stage trains it
    for part in [row] + (["neglection", "partition"] if row == "sdnn" else []):
      source, target = pipeline.stage_dir(tuned, part), pipeline.stage_dir(work_dir, part)
      if copy_stage(source, target, (pipeline.STAGE_RESULT_FILE, pipeline.TOP_K_FILE)):
        logging.info("seed 0 %s: %s from the tuning (%s)", row, part, source)


def copy_stage(source: str, target: str, skipped: tuple[str, ...] = ()) -> bool:
  """Copies a stage folder to `target` whole or not at all; False when `target` exists.

  The lock, checkpoints and crash backup never travel; `skipped` names more files.
  """
  if os.path.exists(target):
    return False
  if not os.path.isdir(source):
    raise FileNotFoundError(f"{source}: no such stage; run bench.evidence_converged first")
  partial = target + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  shutil.copytree(source, partial, ignore=shutil.ignore_patterns(
      *skipped, ".lock", "checkpoints", "backup"))
  os.replace(partial, target)
  return True


def _is_baseline_row(stage: str) -> bool:
  """Rows trained with the baseline's setting; the others take the SDNN row's."""
  return pipeline.split_stage(stage)[0] in ("baseline", "baseline_equal_steps", "logistic")


def _waves(stages: list[str]) -> list[list[str]]:
  """`stages` two at a time, in order (default: SDNN and its baseline first)."""
  ordered = sorted(stages, key=lambda stage: WAVE_ORDER.index(stage)
                   if stage in WAVE_ORDER else len(WAVE_ORDER))
  return [ordered[i:i + 2] for i in range(0, len(ordered), 2)]


WAVE_ORDER = ("sdnn", "baseline", "split_only", "augment_only", "sdnn:asymmetric",
              "baseline:asymmetric")


def _paired(work_dirs: list[str], first: str, second: str) -> dict | None:
  seeds, finished = [], []
  for work_dir in work_dirs:
    try:
      a, b = pipeline.load_top_k(work_dir, first), pipeline.load_top_k(work_dir, second)
    except artifacts.ArtifactError:
      continue
    gaps = seed_summary.load_run(work_dir, [first, second])
    seeds.append((a, b, gaps[first]["gap"], gaps[second]["gap"]))
    finished.append(work_dir)
  result = bootstrap.paired_over_seeds(seeds, FLAGS.num_resamples)
  for point, work_dir in zip(result["per_seed"] if result else [], finished):
    point["work_dir"] = work_dir
  return result


def main(argv):
  del argv
  chosen = _tune()
  logging.info("settings: %s", chosen)
  seeds = [int(s) for s in FLAGS.seeds]
  work_dirs = [os.path.join(FLAGS.output, f"run-{seed}") for seed in seeds]
  if not FLAGS.summarize_only:
    if 0 in seeds:
      _reuse_tuning(chosen, work_dirs[seeds.index(0)])
    # Waves of rows over all seeds, so the main comparison has every seed before the
    # ablations start. Within a seed, an SDNN row runs first, so the θ and partition
    # stages it shares with the others run with SDNN's setting.
    for wave in _waves(FLAGS.stages):
      for seed, work_dir in zip(seeds, work_dirs):
        for stage in wave:
          row = "baseline" if _is_baseline_row(stage) else "sdnn"
          pipeline.run(pipeline_config(work_dir, seed, parse_setting(chosen[row]), [stage],
                                       tuning=False))
  runs = [seed_summary.load_run(work_dir, FLAGS.stages) for work_dir in work_dirs]
  summary = seed_summary.summarize(runs, FLAGS.stages, [[] for _ in runs])
  print(f"\n{FLAGS.model}, seeds {seeds}, test shards {TEST}; mean ± std over the seeds "
        "where the row finished:\n" + seed_summary.markdown_table(summary))
  for stage in FLAGS.stages:
    epochs = [run[stage].get("best_epoch") for run in runs if stage in run]
    steps = [run[stage].get("best_steps") for run in runs if stage in run]
    print(f"{stage}: best epoch {epochs}, steps to it {steps}")
  paired = {}
  for first, second in DIFFERENCES:
    if first in FLAGS.stages and second in FLAGS.stages:
      result = _paired(work_dirs, first, second)
      if result is not None:
        paired[f"{first} - {second}"] = result
        per_seed = ", ".join(f"{100 * p['difference']:+.2f} [{100 * p['interval'][0]:+.2f}, "
                             f"{100 * p['interval'][1]:+.2f}]" for p in result["per_seed"])
        print(f"GAP {first} − {second}: per seed {per_seed}; mean {100 * result['mean']:+.2f} "
              f"[{100 * result['mean_interval'][0]:+.2f}, "
              f"{100 * result['mean_interval'][1]:+.2f}]")
  # No planted hard classes on real shards: their AP is NaN, which JSON cannot hold.
  rows = {stage: {key: value for key, value in row.items() if key != "hard"}
          for stage, row in summary.items()}
  artifacts.write_json(os.path.join(FLAGS.output, "summary.json"), {
      "model": FLAGS.model, "seeds": seeds, "split": {"train": TRAIN, "validation": VALIDATION,
                                                     "test": TEST},
      "settings": chosen, "subclass_merge": FLAGS.subclass_merge, "rows": rows,
      "paired_gap_differences": paired,
      "best_epochs": {stage: [run[stage].get("best_epoch") for run in runs if stage in run]
                      for stage in FLAGS.stages}})
  print(json.dumps(chosen))


if __name__ == "__main__":
  app.run(main)
