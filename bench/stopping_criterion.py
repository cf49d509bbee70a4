"""What early stopping on GAP costs mAP: the kept epoch against the epochs after it.

Rows of the converged protocol are early-stopped on validation GAP@20, a metric pooled
over classes and so led by the frequent ones; mAP averages every class alike. For
each row of a finished `yt8m-sdnn` run this scores, on the *validation* shards only
(the test shards stay unused), the kept model and every checkpoint still on disk
(the last `--keep_checkpoints` epochs of the run, the ones after the kept epoch when
it stopped on patience), giving validation GAP@20 and mAP per epoch: whether mAP was
still rising when GAP chose the epoch.

  python -m bench.stopping_criterion --work_dir=/tmp/converged_moe/run-1 \
      --stages=baseline,sdnn
"""

from __future__ import annotations

import glob
import os
import re

from absl import app, flags

from bench import real_data
from yt8m_sdnn import artifacts, evaluation, training
from yt8m_sdnn.data import reader
from yt8m_sdnn.experiments import pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", None, "A yt8m-sdnn work directory (one seed).")
flags.DEFINE_list("stages", ["baseline", "sdnn"], "Rows.")
flags.DEFINE_string("val_data", None, "Validation shards (default: the protocol's).")
flags.mark_flags_as_required(["work_dir"])


def _scores(model, config: reader.ReaderConfig) -> dict:
  result = evaluation.evaluate(model, config, top_k=20)
  return {"gap": result["gap"], "map": result["map"]}


def main(argv):
  del argv
  pattern = FLAGS.val_data or real_data.pattern(real_data.VALIDATION)
  report = {}
  for stage, train_dir, model, model_config in pipeline.trained_rows(FLAGS.work_dir,
                                                                    FLAGS.stages):
    config = reader.ReaderConfig(pattern, batch_size=1024,
                                 num_classes=model_config["num_classes"])
    kept = training.load_train_result_record(train_dir)["best_epoch"]
    rows = [{"epoch": kept, "kept": True, **_scores(model, config)}]
    # Checkpoints hold the trained network's weights. A subclass row's saved model is
    # that network plus a sigmoid and `SubclassMerge`, which have no weights, so its
    # checkpoints load into it; one that does not fit is reported and skipped.
    checkpoints = sorted(glob.glob(os.path.join(train_dir, "checkpoints", "*.weights.h5")))
    for path in checkpoints:
      try:
        model.load_weights(path)
      except ValueError as error:
        print(f"{stage}: {path} does not fit the saved model ({error}); skipped")
        continue
      epoch = int(re.search(r"(\d+)", os.path.basename(path)).group(1))
      rows.append({"epoch": epoch, "kept": False, **_scores(model, config)})
    report[stage] = rows
    for row in rows:
      print(f"{stage:<12} epoch {row['epoch']:>3}{' (kept)' if row['kept'] else '       '}  "
            f"validation GAP@20 {100 * row['gap']:6.2f}  mAP {100 * row['map']:6.2f}")
  artifacts.write_json(os.path.join(FLAGS.work_dir, "stopping_criterion.json"), report)


if __name__ == "__main__":
  app.run(main)
