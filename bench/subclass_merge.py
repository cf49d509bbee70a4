"""Which merge rule for a trained SDNN: the max over sibling units, or the summed odds?

The paper reads a split class's score as the max over its subclass units. Eq. (11)
trains each unit against the videos outside its class only, so its odds estimate the
subclass's odds against those videos, and the class odds are their sum (`odds_sum`,
derived in `yt8m_sdnn/subclass/merge.py`); the max sits below that. The merge has no
weights: for each SDNN row of finished `yt8m-sdnn` runs (one work dir a seed) this
scores the validation shards and the test shards with both rules on the same trained
weights (`merge.with_merge`). The rule is chosen on validation GAP (one choice for all
seeds, the mean over seeds); the test shards are scored once per rule and reported
with paired bootstrap intervals against `max` and against the run's baseline row.

  python -m bench.subclass_merge --work_dirs=/tmp/converged_moe_reg/run-1,/tmp/converged_moe_reg/run-2 \
      --output=bench/subclass_merge_moe.json
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags, logging

from bench import real_data
from yt8m_sdnn import artifacts, evaluation, training
from yt8m_sdnn.data import reader
from yt8m_sdnn.experiments import bootstrap, pipeline, seed_summary
from yt8m_sdnn.subclass import merge as merge_lib

FLAGS = flags.FLAGS
flags.DEFINE_list("work_dirs", None, "yt8m-sdnn work directories, one a seed.")
flags.DEFINE_list("stages", ["sdnn", "split_only"], "Subclass rows to rescore.")
flags.DEFINE_string("baseline", "baseline", "The row each is compared with.")
flags.DEFINE_string("val_data", real_data.pattern(real_data.VALIDATION),
                    "Validation shards (the rule's choice).")
flags.DEFINE_string("eval_data", real_data.pattern(real_data.TEST), "Test shards.")
flags.DEFINE_integer("num_classes", 3862, "Classes.")
flags.DEFINE_integer("top_k", 20, "k of GAP@k.")
flags.DEFINE_integer("num_resamples", 1000, "Bootstrap resamples.")
flags.DEFINE_string("output", None, "Where the results JSON goes (written atomically).")
flags.mark_flags_as_required(["work_dirs", "output"])

METRICS = ("gap", "hit_at_one", "perr", "map")


def _score(model, pattern: str, keep_top_k: bool) -> dict:
  config = reader.ReaderConfig(pattern, num_classes=FLAGS.num_classes, batch_size=1024)
  return evaluation.evaluate(model, config, top_k=FLAGS.top_k, keep_top_k=keep_top_k)


def _row(work_dir: str, stage: str) -> dict | None:
  """Validation and test metrics (and test top-k) of one row under each merge rule."""
  train_dir = pipeline.stage_dir(work_dir, stage)
  if not os.path.exists(os.path.join(train_dir, training.MODEL_FILE)):
    logging.warning("%s: no %s; skipped", train_dir, training.MODEL_FILE)
    return None
  model = training.load_trained_model(train_dir)
  result = {}
  for rule in merge_lib.MERGE_RULES:
    scored = merge_lib.with_merge(model, rule)
    validation = _score(scored, FLAGS.val_data, keep_top_k=False)
    test = _score(scored, FLAGS.eval_data, keep_top_k=True)
    result[rule] = {"validation": {key: validation[key] for key in METRICS},
                    "test": {key: test[key] for key in METRICS}, "top_k": test["top_k"]}
    logging.info("%s %s %s: validation GAP %.4f, test GAP %.4f", work_dir, stage, rule,
                 validation["gap"], test["gap"])
  return result


def _paired(seeds: list[tuple[dict, dict, float, float]]) -> dict | None:
  """Paired GAP differences over seeds: (first top-k, second top-k, first GAP, second GAP)."""
  result = bootstrap.paired_over_seeds(seeds, FLAGS.num_resamples)
  if result is None:
    return None
  return {"mean": result["mean"], "mean_interval": result["mean_interval"],
          "per_seed": [{"difference": p["difference"], "interval": p["interval"]}
                       for p in result["per_seed"]]}


def main(argv):
  del argv
  # The baseline row as the run scored it: its test top-k and GAP.
  baselines = [(pipeline.load_top_k(work_dir, FLAGS.baseline),
                seed_summary.load_run(work_dir, [FLAGS.baseline])[FLAGS.baseline]["gap"])
               for work_dir in FLAGS.work_dirs]
  summary: dict = {"work_dirs": FLAGS.work_dirs, "val_data": FLAGS.val_data,
                   "eval_data": FLAGS.eval_data, "rows": {}}
  for stage in FLAGS.stages:
    runs = [(base, row) for base, row in
            ((base, _row(work_dir, stage)) for base, work_dir in zip(baselines, FLAGS.work_dirs))
            if row is not None]
    if not runs:
      continue
    chosen = max(merge_lib.MERGE_RULES, key=lambda rule: np.mean(
        [row[rule]["validation"]["gap"] for _, row in runs]))
    entry = {"chosen_on_validation": chosen, "num_seeds": len(runs)}
    for rule in merge_lib.MERGE_RULES:
      entry[rule] = {split: {key: [row[rule][split][key] for _, row in runs] for key in METRICS}
                     for split in ("validation", "test")}
      entry[rule][f"test_gap_minus_{FLAGS.baseline}"] = _paired(
          [(row[rule]["top_k"], base[0], row[rule]["test"]["gap"], base[1])
           for base, row in runs])
    entry["test_gap_odds_sum_minus_max"] = _paired(
        [(row["odds_sum"]["top_k"], row["max"]["top_k"], row["odds_sum"]["test"]["gap"],
          row["max"]["test"]["gap"]) for _, row in runs])
    entry[f"{FLAGS.baseline}_test_gap"] = [base[1] for base, _ in runs]
    summary["rows"][stage] = entry
    for rule in merge_lib.MERGE_RULES:
      difference = entry[rule][f"test_gap_minus_{FLAGS.baseline}"]
      print(f"{stage} {rule}: validation GAP {entry[rule]['validation']['gap']}, test GAP "
            f"{entry[rule]['test']['gap']}, mAP {entry[rule]['test']['map']}; − "
            f"{FLAGS.baseline} {100 * difference['mean']:+.2f} "
            f"[{100 * difference['mean_interval'][0]:+.2f}, "
            f"{100 * difference['mean_interval'][1]:+.2f}]")
    gain = entry["test_gap_odds_sum_minus_max"]
    print(f"{stage}: chosen on validation {chosen}; test GAP odds_sum − max "
          f"{100 * gain['mean']:+.2f} [{100 * gain['mean_interval'][0]:+.2f}, "
          f"{100 * gain['mean_interval'][1]:+.2f}]")
  artifacts.write_json(FLAGS.output, summary)
  print(json.dumps({stage: entry["chosen_on_validation"]
                    for stage, entry in summary["rows"].items()}))


if __name__ == "__main__":
  app.run(main)
