"""Where GAP and mAP part: how the split classes' merged scores sit among the others.

GAP@20 pools every video's top 20 (score, class) pairs into one ranking across classes;
mAP ranks each class's videos on their own. A subclass model scores a split class by
the max over its sibling units (`SubclassMerge`), each trained on about half of the
class's positives against all of its negatives (and the eq. 12 copies); if those merged
scores sit higher or lower than the other classes' scores, GAP moves while each class's
own ranking (its AP) may not. For each row of a finished `yt8m-sdnn` run this scores
the test shards and reports, for the split classes against the rest:
  * the share of the top-20 slots they take and the share of true labels they have;
  * the precision of those slots (how often a split class in a top 20 is true);
  * the mean score of their true and false entries in the top 20;
  * their mean AP (what mAP sees) and their GAP-share: the hits they contribute to GAP.

  python -m bench.subclass_calibration --work_dir=/tmp/converged_lr/run-0 \
      --eval_data='../shared/data/yt8m-2018/validate/validate01[34]*'
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from yt8m_sdnn import artifacts, evaluation, metrics
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.data import reader
from yt8m_sdnn.experiments import measure

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", None, "A yt8m-sdnn work directory (one seed).")
flags.DEFINE_string("eval_data", None, "Its test shards.")
flags.DEFINE_list("stages", ["baseline", "sdnn", "augment_only", "split_only"], "Rows.")
flags.DEFINE_integer("top_k", 20, "k of GAP@k.")
flags.mark_flags_as_required(["work_dir", "eval_data"])


def _scores(model, config: reader.ReaderConfig) -> tuple[np.ndarray, np.ndarray]:
  scores, labels = [], []
  for batch_scores, batch_labels in evaluation.score_batches(model, reader.build_dataset(config)):
    scores.append(batch_scores)
    labels.append(batch_labels)
  return np.concatenate(scores), np.concatenate(labels) > 0


def calibration(scores: np.ndarray, labels: np.ndarray, split: np.ndarray, top_k: int) -> dict:
  """The split classes (boolean mask `split`) against the rest, in the pooled top-k."""
  order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
  top_scores = np.take_along_axis(scores, order, axis=1)
  hits = np.take_along_axis(labels, order, axis=1)
  in_split = split[order]
  class_ap = metrics.EvaluationMetrics(scores.shape[1], top_k=top_k)
  class_ap.accumulate(scores, labels.astype(np.float32))
  ap = class_ap.class_average_precision()
  # Each hit's share of GAP: its precision at its rank in the pooled list.
  pooled = np.argsort(-top_scores.ravel(), kind="stable")
  pooled_hits = hits.ravel()[pooled]
  precision = np.cumsum(pooled_hits) / np.arange(1, pooled_hits.size + 1)
  gap_terms = np.where(pooled_hits, precision, 0.0) / max(int(labels.sum()), 1)
  result = {"gap": float(gap_terms.sum())}
  for name, mask in (("split", in_split), ("other", ~in_split)):
    classes = split if name == "split" else ~split
    result[name] = {
        "top_k_share": float(mask.mean()),
        "label_share": float(labels[:, classes].sum() / max(labels.sum(), 1)),
        "top_k_precision": float(hits[mask].mean()) if mask.any() else None,
        "mean_true_score": float(top_scores[mask & hits].mean()) if (mask & hits).any() else None,
        "mean_false_score": (float(top_scores[mask & ~hits].mean())
                             if (mask & ~hits).any() else None),
        "mean_ap": float(np.nanmean(ap[classes])),
        "gap_contribution": float(gap_terms[in_split.ravel()[pooled] == (name == "split")].sum()),
    }
  return result


def main(argv):
  del argv
  selected = artifacts.read_json(
      os.path.join(FLAGS.work_dir, "neglection", measure.NEGLECTION_FILE))["selected"]
  report = {}
  for stage, _, model, config in pipeline.trained_rows(FLAGS.work_dir, FLAGS.stages):
    eval_reader = reader.ReaderConfig(FLAGS.eval_data, num_classes=config["num_classes"],
                                      batch_size=1024)
    scores, labels = _scores(model, eval_reader)
    split = np.zeros(scores.shape[1], bool)
    split[selected] = True
    report[stage] = calibration(scores, labels, split, FLAGS.top_k)
  print(f"{'row':<14}{'GAP':>7} | split classes: {'slots':>6}{'labels':>7}{'prec':>6}"
        f"{'true s':>7}{'false s':>8}{'mAP':>6}{'GAP part':>9} | others: {'prec':>6}"
        f"{'false s':>8}{'mAP':>6}{'GAP part':>9}")
  for stage, row in report.items():
    a, b = row["split"], row["other"]
    print(f"{stage:<14}{100 * row['gap']:7.2f} | {'':15}{100 * a['top_k_share']:6.1f}"
          f"{100 * a['label_share']:7.1f}{100 * a['top_k_precision']:6.1f}"
          f"{a['mean_true_score']:7.3f}{a['mean_false_score']:8.3f}{100 * a['mean_ap']:6.1f}"
          f"{100 * a['gap_contribution']:9.2f} | {'':8}{100 * b['top_k_precision']:6.1f}"
          f"{b['mean_false_score']:8.3f}{100 * b['mean_ap']:6.1f}{100 * b['gap_contribution']:9.2f}")
  artifacts.write_json(os.path.join(FLAGS.work_dir, "subclass_calibration.json"), report)


if __name__ == "__main__":
  app.run(main)
