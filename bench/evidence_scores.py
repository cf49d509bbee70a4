"""Which classes should SDNN split? Converged SDNN rows with each neglection score.

Builds on `bench.evidence_converged` (same real-shard split, same early-stopped
protocol, same setting: the grid winner adam/0.03/0 of both the baseline and the SDNN
row; `--baseline_setting` where the baseline's own differs). For every score variant and seed, the SDNN row is trained with the classes that
score selects, early-stopped on the validation shards and scored once on the test
shards, and compared with the SAME seed's converged baseline (its folder is linked
from `--baseline_runs`, so the baseline is trained once for every variant). Variants:
a name of `neglection.scores.NEGLECTION_SCORES`, with `@late` for a tracked score
measured from the converged baseline's weights instead of from scratch; and the
control `matched_random`: as many classes as `null_normalized` selected for the same
seed, drawn at random with the same training frequencies (each selected class is
replaced by a random one among the 10 classes nearest to it in frequency rank), so a
difference between the two is the score's, not the frequency band's.

Also per variant and seed: how its selection ranks against the baseline's validation
AP and the training frequency (Spearman ρ, partial ρ at equal frequency, mean
validation AP of the selected classes): `ranking` in the summary.

Waves: seed 0 of every variant first, then seed 1, then seed 2; resumable (finished
rows are skipped). One θ run per seed and window (from scratch, or `@late`): the other
tracked scores of that window are recomputed from its file's sums (`_share_theta`).
About 6 minutes per logistic row and 4 to 12 per MoE row on 2 CPU cores, by the load.

  python -m bench.evidence_converged --model=logistic --output=/tmp/converged_lr
  python -m bench.evidence_scores --baseline_runs=/tmp/converged_lr --output=/tmp/scores_lr
  python -m bench.evidence_scores --baseline_runs=/tmp/converged_lr --output=/tmp/scores_lr \
      --summarize_only
  python -m bench.evidence_scores --model=moe --baseline_runs=/tmp/converged_moe \
      --output=/tmp/scores_moe --variants=null_normalized,matched_random,low_val_ap
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags, logging

from bench import real_data
from yt8m_sdnn import artifacts, neglection, training
from yt8m_sdnn.experiments import bootstrap
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.data import class_counts, reader
from yt8m_sdnn.experiments import class_ap, evidence, neglection_report
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.experiments.measure import NEGLECTION_FILE

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "/tmp/evidence_scores", "Work directory.")
flags.DEFINE_enum("model", "logistic", ["logistic", "moe"],
                  "Model family of the SDNN rows; the baseline runs must be of it.")
flags.DEFINE_string("baseline_runs", "/tmp/converged_lr",
                    "bench.evidence_converged's output: run-SEED/baseline and run-SEED/sdnn.")
flags.DEFINE_list("variants", ["low_val_ap", "null_normalized", "matched_random", "paper@late",
                               "frequency_residual", "ap_gap", "null_normalized@late"],
                  "Score variants, in the order they run: SCORE or SCORE@late.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_string("setting", "adam/0.03/0",
                    "OPTIMIZER/LEARNING_RATE/WEIGHT_DECAY of the SDNN rows and θ.")
flags.DEFINE_string("baseline_setting", None,
                    "OPTIMIZER/LEARNING_RATE/WEIGHT_DECAY the linked baselines were trained "
                    "with, where the tuning chose another one for them (the MoE's wider "
                    "grid: adamw/0.03/0.2 beside the SDNN rows' adamw/0.03/0.05); "
                    "default: --setting. A baseline trained otherwise is refused.")
flags.DEFINE_integer("neglection_steps", 250, "Iterations of the θ stage.")
flags.DEFINE_integer("num_resamples", 1000, "Bootstrap resamples.")
flags.DEFINE_bool("summarize_only", False, "Train nothing; summarize what finished.")

# As bench.evidence_converged trains each family (the starter's MoE with 2 mixtures).
MODEL_OPTIONS = {"logistic": {}, "moe": {"num_mixtures": 2}}
MATCHED_RANDOM = selection.MATCHED_RANDOM
MATCHED_TO = "null_normalized"
MATCH_NEIGHBOURS = selection.MATCH_NEIGHBOURS
TRAIN, VALIDATION, TEST = real_data.TRAIN, real_data.VALIDATION, real_data.TEST


def _readers(seed: int):
  train = reader.ReaderConfig(real_data.pattern(TRAIN), batch_size=512, training=True, seed=seed)
  val = reader.ReaderConfig(real_data.pattern(VALIDATION), batch_size=1024)
  test = reader.ReaderConfig(real_data.pattern(TEST), batch_size=1024)
  return train, val, test


def _config(work_dir: str, seed: int, variant: str) -> pipeline.PipelineConfig:
  score, _, when = variant.partition("@")
  if variant == MATCHED_RANDOM:  # its neglection.json is written by `_matched_random`
    score = scores_lib.DEFAULT_SCORE
  train_reader, val_reader, test_reader = _readers(seed)

  def train(setting: str) -> training.TrainConfig:
    optimizer, learning_rate, weight_decay = setting.split("/")
    return training.TrainConfig(train_dir="", num_epochs=200, seed=seed, patience=4,
                                optimizer=optimizer, learning_rate=float(learning_rate),
                                weight_decay=float(weight_decay), learning_rate_decay=1.0,
                                model_options=MODEL_OPTIONS[FLAGS.model])
  return pipeline.PipelineConfig(
      work_dir=work_dir, train_reader=train_reader, eval_reader=test_reader,
      val_reader=val_reader, train=train(FLAGS.setting), model=FLAGS.model, stages=("sdnn",),
      neglection_steps=FLAGS.neglection_steps, neglection_score=score,
      neglection_from_baseline=when == "late",
      baseline_train=train(FLAGS.baseline_setting) if FLAGS.baseline_setting else None)


def _link_baseline(work_dir: str, seed: int) -> None:
  source = os.path.join(FLAGS.baseline_runs, f"run-{seed}", "baseline")
  if not os.path.exists(os.path.join(source, pipeline.STAGE_RESULT_FILE)):
    raise SystemExit(f"{source}: no finished baseline row; run bench.evidence_converged first")
  trained = training.load_model_config(source)["model"]
  if trained != FLAGS.model:
    raise SystemExit(f"{source}: the baseline is a {trained} model; --model={FLAGS.model}")
  os.makedirs(work_dir, exist_ok=True)
  target = os.path.join(work_dir, "baseline")
  if not os.path.lexists(target):
    os.symlink(os.path.abspath(source), target)


def _matched_random(work_dir: str, seed: int, counts: np.ndarray) -> None:
  """Writes the control's neglection.json: `null_normalized`'s selection, frequency-matched.

  The draw is `selection.matched_random`'s (the library's `--selection=matched_random`),
  made here from the sibling variant's file so that both rows share one θ run.
  """
  path = os.path.join(work_dir, "neglection", NEGLECTION_FILE)
  if os.path.exists(path):
    return
  source = os.path.join(FLAGS.output, MATCHED_TO, f"run-{seed}", "neglection", NEGLECTION_FILE)
  if not os.path.exists(source):
    raise SystemExit(f"{source}: run the {MATCHED_TO} variant of seed {seed} first")
  selected = artifacts.read_json(source)["selected"]
  chosen = selection.matched_random(np.array(selected), counts, seed,
                                    num_neighbours=MATCH_NEIGHBOURS).tolist()
  artifacts.write_json(path, {"score": MATCHED_RANDOM, "matched_to": source,
                              "selected": chosen, "source_selected": selected,
                              "num_classes": int(counts.size)})


def _share_theta(work_dir: str, seed: int, variant: str) -> None:
  """A tracked score's θ stage from a sibling's: same seed, window and shards.

  The θ run does not depend on the score, and its neglection.json keeps every window's
  sums, so the first tracked variant of a seed (from scratch, or `@late`) trains and
  the others are `neglection.rescored` from its file: one θ run per seed and window
  instead of one per variant, and the variants differ by the score alone.
  """
  score, _, when = variant.partition("@")
  path = os.path.join(work_dir, "neglection", NEGLECTION_FILE)
  if score not in scores_lib.TRACKED_SCORES or os.path.exists(path):
    return
  for other in FLAGS.variants:
    other_score, _, other_when = other.partition("@")
    source = os.path.join(FLAGS.output, other, f"run-{seed}", "neglection", NEGLECTION_FILE)
    if (other == variant or other_when != when or other_score not in scores_lib.TRACKED_SCORES
        or not os.path.exists(source)):
      continue
    payload = artifacts.read_json(source)
    if payload.get("iterations_run") != FLAGS.neglection_steps:
      continue  # measured over another window
    if selection.SelectionRule.from_json(payload).needs_class_counts:
      continue  # `rescored` re-ranks without the cap or band its `selected` followed
    try:
      shared = neglection.rescored(payload, score)
    except ValueError:
      continue  # written before neglection.json kept the sums
    artifacts.write_json(path, dict(shared, rescored_from=source))
    logging.info("variant %s, seed %d: θ stage rescored from %s", variant, seed, source)
    return


def _validation_ap(seed: int) -> np.ndarray:
  """The seed's converged baseline's per-class AP on the validation shards (cached)."""
  path = os.path.join(FLAGS.output, f"baseline_val_ap-{seed}.npz")
  if os.path.exists(path):
    return artifacts.read_npz(path)["ap"]
  model = training.load_trained_model(os.path.join(FLAGS.baseline_runs, f"run-{seed}",
                                                   "baseline"))
  scores, labels = evidence.score_videos(model, _readers(seed)[1])
  ap = class_ap.per_class_average_precision(scores, labels)
  artifacts.write_npz(path, {"ap": ap})
  return ap


def _ranking(work_dir: str, seed: int, counts: np.ndarray) -> dict | None:
  path = os.path.join(work_dir, "neglection", NEGLECTION_FILE)
  if not os.path.exists(path):
    return None
  payload = artifacts.read_json(path)
  if "score_values" not in payload and "theta" not in payload:  # matched_random: no score
    val_ap = _validation_ap(seed)
    chosen = np.zeros(val_ap.size, bool)
    chosen[payload["selected"]] = True
    nan = float("nan")
    return {"rho_theta_ap": nan, "rho_theta_frequency": nan,
            "rho_theta_ap_given_frequency": nan,
            "mean_ap_selected": float(np.nanmean(val_ap[chosen])),
            "mean_ap_not_selected": float(np.nanmean(val_ap[~chosen])),
            "num_classes_compared": int(np.isfinite(val_ap).sum())}
  values = payload.get("score_values") or payload["theta"]
  values = np.array([np.nan if v is None else v for v in values], np.float64)
  statistics = neglection_report.ranking_statistics(values, _validation_ap(seed), counts, None,
                                                    len(payload["selected"]))
  return {key: statistics[key] for key in (
      "rho_theta_ap", "rho_theta_frequency", "rho_theta_ap_given_frequency",
      "mean_ap_selected", "mean_ap_not_selected", "num_classes_compared")}


def _paired(pairs: list[tuple[str, str]]) -> dict | None:
  """SDNN − baseline test GAP per seed (bootstrap interval) and for the seed mean."""
  seeds = []
  gap = lambda d: artifacts.read_json(os.path.join(d, pipeline.STAGE_RESULT_FILE))["gap"]
  for sdnn_dir, baseline_dir in pairs:
    try:
      a = pipeline.load_top_k(os.path.dirname(sdnn_dir), os.path.basename(sdnn_dir))
      b = pipeline.load_top_k(os.path.dirname(baseline_dir), os.path.basename(baseline_dir))
    except artifacts.ArtifactError:
      continue
    seeds.append((a, b, gap(sdnn_dir), gap(baseline_dir)))
  result = bootstrap.paired_over_seeds(seeds, FLAGS.num_resamples)
  for point in result["per_seed"] if result else []:
    point["sdnn_gap"], point["baseline_gap"] = point["first_gap"], point["second_gap"]
  return result


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds]
  for variant in FLAGS.variants:
    score, _, when = variant.partition("@")
    if variant != MATCHED_RANDOM:
      scores_lib.check_score(score)
    if when not in ("", "late"):
      raise SystemExit(f"--variants: {variant!r}: expected SCORE or SCORE@late")
  counts = class_counts.count_class_positives(_readers(0)[0])[0]
  if not FLAGS.summarize_only:
    for seed in seeds:
      for variant in FLAGS.variants:
        work_dir = os.path.join(FLAGS.output, variant, f"run-{seed}")
        _link_baseline(work_dir, seed)
        if variant == MATCHED_RANDOM:
          _matched_random(work_dir, seed, counts)
        _share_theta(work_dir, seed, variant)
        logging.info("variant %s, seed %d: %s", variant, seed, work_dir)
        pipeline.run(_config(work_dir, seed, variant))
  summary = {"model": FLAGS.model, "setting": FLAGS.setting,
             "baseline_setting": FLAGS.baseline_setting or FLAGS.setting, "seeds": seeds, "test": TEST,
             "variants": {}}
  # The paper's θ from scratch is bench.evidence_converged's own sdnn row.
  variants = [("paper", os.path.join(FLAGS.baseline_runs, "run-{seed}"))] + [
      (v, os.path.join(FLAGS.output, v, "run-{seed}")) for v in FLAGS.variants]
  print(f"\n{FLAGS.model}, setting {FLAGS.setting}, test shards {TEST}")
  print("| score | seeds | ρ(score, val AP) | ρ(score, frequency) | partial ρ at equal frequency "
        "| val AP selected / rest | test GAP SDNN | SDNN − baseline (95% interval) |")
  print("|---|---|---|---|---|---|---|---|")
  for variant, pattern in variants:
    dirs = [pattern.format(seed=seed) for seed in seeds]
    rankings = [r for r in (_ranking(d, s, counts) for d, s in zip(dirs, seeds)) if r]
    paired = _paired([(os.path.join(d, "sdnn"), os.path.join(d, "baseline")) for d in dirs])
    summary["variants"][variant] = {"ranking": rankings, "paired": paired}
    if not rankings:
      continue
    mean = lambda key: float(np.mean([r[key] for r in rankings]))
    cells = [variant, str(paired["num_seeds"] if paired else 0),
             f"{mean('rho_theta_ap'):+.2f}", f"{mean('rho_theta_frequency'):+.2f}",
             f"{mean('rho_theta_ap_given_frequency'):+.2f}",
             f"{mean('mean_ap_selected'):.3f} / {mean('mean_ap_not_selected'):.3f}"]
    if paired:
      gaps = [p["sdnn_gap"] for p in paired["per_seed"]]
      low, high = paired["mean_interval"]
      cells += [f"{100 * np.mean(gaps):.2f}",
                f"{100 * paired['mean']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"]
    else:
      cells += ["—", "—"]
    print("| " + " | ".join(cells) + " |")
  # Does the score matter beyond the frequency band it picks? Its SDNN row against the
  # frequency-matched random classes' SDNN row, paired per seed on the same test videos.
  if MATCHED_RANDOM in FLAGS.variants and MATCHED_TO in FLAGS.variants:
    versus = _paired([(os.path.join(FLAGS.output, MATCHED_TO, f"run-{seed}", "sdnn"),
                       os.path.join(FLAGS.output, MATCHED_RANDOM, f"run-{seed}", "sdnn"))
                      for seed in seeds])
    summary[f"{MATCHED_TO} - {MATCHED_RANDOM}"] = versus
    if versus:
      low, high = versus["mean_interval"]
      print(f"\nSDNN rows, {MATCHED_TO} − {MATCHED_RANDOM}: {100 * versus['mean']:+.2f} "
            f"[{100 * low:+.2f}, {100 * high:+.2f}] over {versus['num_seeds']} seeds")
  artifacts.write_json(os.path.join(FLAGS.output, "summary.json"), summary)
  print(json.dumps({v: (s["paired"] or {}).get("mean") for v, s in summary["variants"].items()}))


if __name__ == "__main__":
  app.run(main)
