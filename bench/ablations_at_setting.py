"""The converged protocol's ablation rows trained with another row's tuned setting.

`bench.evidence_converged` trains the ablations (`split_only`, `augment_only`) with the
SDNN row's tuned setting. Where the baseline's tuned setting differs (the MoE: AdamW
λ = 0.2 against SDNN's 0.05), an ablation at SDNN's setting differs from the baseline in
two things. This trains them with `--setting` instead, on the same θ selection and
partition per seed: it copies each seed's finished baseline row (without its model),
`neglection/` and `partition/` from `--source` into `--output`, then runs the stages
(resumable; finished rows are read back). Then the table and the paired intervals:

  python -m bench.ablations_at_setting --model=moe --source=/tmp/converged_moe_reg \
      --output=/tmp/moe_ablations_0.2 --setting=adamw/0.03/0.2
  python -m bench.evidence_converged --model=moe --output=/tmp/moe_ablations_0.2 \
      --stages=baseline,split_only,augment_only --grid=adamw/0.03/0.2 --summarize_only
"""

from __future__ import annotations

import os

from absl import app, flags, logging

from bench import evidence_converged
from yt8m_sdnn.experiments import pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("source", None, "The evidence_converged --output whose runs to reuse.")
flags.DEFINE_string("setting", None, "OPTIMIZER/LEARNING_RATE/WEIGHT_DECAY[/DECAY] of the rows.")
flags.DEFINE_list("ablations", ["split_only", "augment_only"], "Rows to train.")
flags.mark_flags_as_required(["source", "setting"])

COPIED = ("baseline", "neglection", "partition")


def main(argv):
  del argv
  setting = evidence_converged.parse_setting(FLAGS.setting)
  bad = [row for row in FLAGS.ablations if row not in ("split_only", "augment_only")]
  if bad:
    raise app.UsageError(f"--ablations: expected split_only or augment_only. Received: {bad}")
  for seed in (int(s) for s in FLAGS.seeds):
    work_dir = os.path.join(FLAGS.output, f"run-{seed}")
    for part in COPIED:
      evidence_converged.copy_stage(
          pipeline.stage_dir(os.path.join(FLAGS.source, f"run-{seed}"), part),
          pipeline.stage_dir(work_dir, part), skipped=("model.keras", "logs"))
    for row in FLAGS.ablations:
      logging.info("seed %d %s with %s", seed, row, FLAGS.setting)
      pipeline.run(evidence_converged.pipeline_config(
          work_dir, seed, setting, [row], tuning=False))


if __name__ == "__main__":
  app.run(main)
