"""The GPU run: Keras on any backend over the packed real data, in a fixed time budget.

  KERAS_BACKEND=jax python -m bench.device_run --data=device_data/yt8m_video_level.npz \
      --output=device_results.json --budget_s=480

Made for a machine with an accelerator and no TensorFlow (Keras 3 on JAX, numpy data
from `bench.pack_real`), it writes `--output` after every section, so whatever the
budget allowed is on disk when it ends:
1. `environment`: backend, devices, library versions.
2. `throughput`: training examples/s of logistic, MoE, the paper's CNN and the
   subclass CNN (10% of classes split), float32 and mixed_bfloat16, batch 512 and 4096.
3. `converged`: the converged-evidence protocol for the paper's CNN on the packed
   split (train / validation / test shards of README's "Converged evidence"): the
   baseline (cross-entropy, eq. 3), θ (eqs. 6-10) over `--neglection_steps` iterations
   of a fresh baseline, Algorithm 1 on the training set (`subclass.arrays`), then
   SDNN (split + eq. 12 + eq. 11), augment only and split only. Every row is trained
   epoch by epoch to its best validation GAP@20 (patience `--patience`), keeps that
   epoch's weights and is scored once on the test split. Seed 0 first; further seeds
   while time is left. No row may take more than `--row_share` of this part's time, so
   the baseline and the SDNN row of seed 0 both train whatever the recipe's pace.
   The split rows are also scored, after training, with the summed-odds merge rule
   (`odds_sum`, README "Which merge rule?"; the epoch stays the one max chose): on
   validation (the choice of rule) and on test, in `by_merge`.
The CNN uses the project's early-stopped CNN recipe (`training.EARLY_STOPPED_RECIPES`:
Adam 0.001, constant, coupled L2 with λ = 5e-4; a test keeps the two equal), trained on
logits (eq. 3 and eq. 11 from logits are exact on every backend) and scored through its
sigmoid.
`--smoke` runs every section on tiny random data on the CPU in about a minute.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import tempfile
import time

import keras
import numpy as np
from absl import app, flags, logging

from yt8m_sdnn import artifacts, metrics, models
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.data import packed
from yt8m_sdnn.neglection import monitor as monitor_lib
from yt8m_sdnn.subclass import arrays
from yt8m_sdnn.subclass.merge import with_merge

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags of `main`; defined only when run as a program, so that importing
  this module (tests do) adds no flags beside the binaries' own."""
  flags.DEFINE_string("data", os.path.join("device_data", packed.PACKED_FILE),
                      "The packed file (bench.pack_real).")
  flags.DEFINE_string("output", "device_results.json", "Results JSON, rewritten after each part.")
  flags.DEFINE_float("budget_s", 480, "Seconds for everything; each part has its share.")
  flags.DEFINE_float("throughput_share", 0.25, "Share of the budget for the throughput part.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the converged rows, in order.")
  flags.DEFINE_integer("batch_size", 512, "Batch of the converged rows (the paper's).")
  flags.DEFINE_integer("patience", 4, "Epochs without a better validation GAP.")
  flags.DEFINE_integer("max_epochs", 400, "Epoch cap of a converged row (a safety net: the "
                       "paper's CNN recipe was still rising after 14 epochs on the CPU).")
  flags.DEFINE_float("row_share", 0.35, "Most of the converged part's time one row may "
                     "take, so that the baseline cannot use up the SDNN row's time; a row "
                     "cut short records stopped = 'budget'.")
  flags.DEFINE_integer("neglection_steps", 250, "Iterations of the θ stage.")
  flags.DEFINE_float("top_fraction", 0.1, "Share of classes split (the paper's 10%).")
  flags.DEFINE_bool("smoke", False, "Tiny random data, small budget: checks the code path.")

# The CNN's early-stopped recipe (training.EARLY_STOPPED_RECIPES["cnn"] over TrainConfig).
CNN_RECIPE = {"learning_rate": 0.001, "weight_decay": 5e-4}
ROWS = ("baseline", "sdnn", "augment_only", "split_only")
TOP_K = 20


def _environment() -> dict:
  info = {"keras": keras.__version__, "backend": keras.backend.backend(),
          "numpy": np.__version__, "python": platform.python_version(),
          "platform": platform.platform()}
  if keras.backend.backend() == "jax":
    import jax  # pylint: disable=import-outside-toplevel
    info.update(jax=jax.__version__, devices=[str(d) for d in jax.devices()])
  return info


def _write(results: dict) -> None:
  artifacts.write_json(FLAGS.output, results)


def _throughput(feature_size: int, num_classes: int, deadline: float, smoke: bool) -> list:
  """Training examples/s per (model, precision, batch), on random data."""
  rows = []
  batches = (16,) if smoke else (512, 4096)
  split = max(1, int(FLAGS.top_fraction * num_classes))
  unit_to_class = list(range(num_classes)) + list(range(split))
  rng = np.random.default_rng(0)
  # Every model at the first batch size before the next, so a short budget still
  # measures each model.
  for batch in batches:
    for name in ("logistic", "moe", "cnn", "subclass_cnn"):
      for precision in ("float32", "mixed_bfloat16"):
        if time.time() > deadline:
          rows.append({"model": name, "precision": precision, "batch_size": batch,
                       "skipped": "budget spent"})
          continue
        keras.config.set_dtype_policy(precision)
        try:
          if name == "subclass_cnn":
            model, _ = models.build_subclass_model("cnn", feature_size, unit_to_class,
                                                   num_classes)
            loss = loss_registry.make_loss(loss_registry.LossConfig(), num_classes,
                                           from_logits=True, unit_to_class=unit_to_class)
            width = len(unit_to_class)
          else:
            model = models.build_model(name, feature_size, num_classes)
            loss, width = loss_registry.make_loss(loss_registry.LossConfig(), num_classes), \
                num_classes
          model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
          x = rng.normal(size=(batch, feature_size)).astype(np.float32)
          y = (rng.random((batch, width)) < 0.001).astype(np.float32)
          for _ in range(2):  # compilation
            model.train_on_batch(x, y)
          steps, started = 0, time.perf_counter()
          while steps < 3 or (time.perf_counter() - started < (0.2 if smoke else 3.0)
                              and steps < 500):
            model.train_on_batch(x, y)  # returns host floats: the step has finished
            steps += 1
          seconds = time.perf_counter() - started
          rows.append({"model": name, "precision": precision, "batch_size": batch,
                       "steps": steps, "examples_per_second": steps * batch / seconds})
          logging.info("throughput %s", rows[-1])
        finally:
          keras.config.set_dtype_policy("float32")
  return rows


def _scores(model: keras.Model, features: np.ndarray) -> np.ndarray:
  return np.asarray(model.predict(features, batch_size=4096, verbose=0), np.float32)


def _metrics(model: keras.Model, features: np.ndarray, labels: np.ndarray) -> dict:
  evaluation = metrics.EvaluationMetrics(labels.shape[1], top_k=TOP_K)
  evaluation.accumulate(_scores(model, features), labels)
  result = evaluation.result()
  return {key: float(result[key]) for key in ("gap", "hit_at_one", "perr", "map")}


def _early_stopped(train_model, score_model, x, y, val, deadline: float) -> dict:
  """Epochs until `patience` without a better validation GAP, the cap, or the deadline."""
  best, best_weights, best_epoch, wait, curve, steps = -1.0, None, 0, 0, [], 0
  started, stopped = time.perf_counter(), "cap"
  steps_per_epoch = math.ceil(len(x) / FLAGS.batch_size)
  for epoch in range(1, FLAGS.max_epochs + 1):
    if time.time() > deadline:
      stopped = "budget"
      break
    train_model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, shuffle=True, verbose=0)
    steps += steps_per_epoch
    gap = _metrics(score_model, *val)["gap"]
    curve.append({"epoch": epoch, "steps": steps, "val_gap": gap})
    if gap > best:
      best, best_epoch, wait = gap, epoch, 0
      best_weights = [np.array(w) for w in train_model.get_weights()]
    else:
      wait += 1
      if wait >= FLAGS.patience:
        stopped = "patience"
        break
  seconds = time.perf_counter() - started
  if best_weights is not None:
    train_model.set_weights(best_weights)
  return {"best_epoch": best_epoch, "best_steps": best_epoch * steps_per_epoch,
          "best_val_gap": best, "validation_curve": curve, "stopped": stopped,
          "seconds": seconds, "examples_per_second": steps * FLAGS.batch_size / seconds
          if seconds else None, "train_videos": len(x)}


def _optimizer():
  return keras.optimizers.Adam(CNN_RECIPE["learning_rate"])


def _baseline_models(feature_size: int, num_classes: int) -> tuple[keras.Model, keras.Model]:
  """(logits model to train, probability model to score), sharing every layer.

  Trained on logits, so eq. (3) is exact on every backend: given probabilities, Keras
  on JAX clips them to [1e-7, 1 - 1e-7] (TensorFlow recovers the sigmoid's logits).
  """
  logits = models.build_model("cnn", feature_size, num_classes, output_activation=None,
                              weight_decay=CNN_RECIPE["weight_decay"] / 2)
  logits.compile(optimizer=_optimizer(), loss=loss_registry.make_loss(
      loss_registry.LossConfig(), num_classes, from_logits=True))
  probabilities = keras.layers.Activation("sigmoid", dtype="float32")(logits.output)
  return logits, keras.Model(logits.inputs, probabilities)


def _theta(x, y, feature_size: int, num_classes: int) -> dict:
  """θ of a fresh baseline over about `neglection_steps` iterations (one window)."""
  steps_per_epoch = math.ceil(len(x) / FLAGS.batch_size)
  epochs = max(1, math.ceil(FLAGS.neglection_steps / steps_per_epoch))
  model = models.build_model("cnn", feature_size, num_classes, output_activation=None,
                             weight_decay=CNN_RECIPE["weight_decay"] / 2)
  wrapper, monitor = monitor_lib.attach_neglection_monitor(
      model, tau=epochs * steps_per_epoch, top_fraction=FLAGS.top_fraction,
      outputs_are_logits=True)
  wrapper.compile(optimizer=_optimizer(), loss=loss_registry.make_loss(
      loss_registry.LossConfig(), num_classes, from_logits=True))
  wrapper.fit(x, y, batch_size=FLAGS.batch_size, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[monitor])
  monitor.flush()
  selected = [int(c) for c in monitor.select()]
  return {"selected": selected, "iterations": epochs * steps_per_epoch}


def _subclass_row(row: str, plan, x, y, val, test, deadline: float) -> dict:
  split, augment = row in ("sdnn", "split_only"), row in ("sdnn", "augment_only")
  features, labels = arrays.subclass_arrays(x, y, plan, split=split, augment=augment)
  num_classes = y.shape[1]
  if split:
    unit_to_class = [int(c) for c in plan.layout.unit_to_class]
    train_model, score_model = models.build_subclass_model(
        "cnn", x.shape[1], unit_to_class, num_classes,
        weight_decay=CNN_RECIPE["weight_decay"] / 2)
    train_model.compile(optimizer=_optimizer(), loss=loss_registry.make_loss(
        loss_registry.LossConfig(), num_classes, from_logits=True, unit_to_class=unit_to_class))
  else:
    train_model, score_model = _baseline_models(x.shape[1], num_classes)
  record = _early_stopped(train_model, score_model, features, labels, val, deadline)
  record["test"] = _metrics(score_model, *test)
  if split:  # the other merge rule on the same trained model: no training
    odds_sum = with_merge(score_model, "odds_sum")
    record["by_merge"] = {"odds_sum": {"val_gap": _metrics(odds_sum, *val)["gap"],
                                       "test": _metrics(odds_sum, *test)}}
  return record


def _converged(data: packed.PackedData, results: dict, deadline: float) -> None:
  train, val, test = (data.split(name) for name in ("train", "validation", "test"))
  x, y = train.features, train.dense_labels()
  val_set, test_set = (val.features, val.dense_labels()), (test.features, test.dense_labels())
  results["converged"] = {"model": "cnn", "recipe": CNN_RECIPE, "batch_size": FLAGS.batch_size,
                          "patience": FLAGS.patience, "row_share": FLAGS.row_share,
                          "seeds": {}}
  started = time.time()
  row_deadline = lambda: min(deadline, time.time() + FLAGS.row_share * (deadline - started))
  for seed in (int(s) for s in FLAGS.seeds):
    if time.time() > deadline:
      break
    runs = results["converged"]["seeds"].setdefault(str(seed), {})
    keras.utils.set_random_seed(seed)
    model, scorer = _baseline_models(x.shape[1], y.shape[1])
    runs["baseline"] = _early_stopped(model, scorer, x, y, val_set, row_deadline())
    runs["baseline"]["test"] = _metrics(scorer, *test_set)
    _write(results)
    if time.time() > deadline:
      break
    keras.utils.set_random_seed(seed)
    runs["theta"] = _theta(x, y, x.shape[1], y.shape[1])
    plan = arrays.partition_arrays(x, y, runs["theta"]["selected"],
                                   feature_names=tuple(data.feature_names))
    for row in ROWS[1:]:
      if time.time() > deadline:
        break
      keras.utils.set_random_seed(seed)
      runs[row] = _subclass_row(row, plan, x, y, val_set, test_set, row_deadline())
      runs[row]["difference_to_baseline"] = (runs[row]["test"]["gap"]
                                             - runs["baseline"]["test"]["gap"])
      _write(results)
      logging.info("seed %d %s: test GAP %.4f (baseline %.4f)", seed, row,
                   runs[row]["test"]["gap"], runs["baseline"]["test"]["gap"])


def _smoke_data(directory: str) -> str:
  """A tiny packed file of random videos with the real format and a 3-way split."""
  rng = np.random.default_rng(0)
  num_videos, num_classes = 240, 30
  features = np.clip(rng.normal(size=(num_videos, 1152)), -1.99, 2.0).astype(np.float32)
  labels = [sorted(rng.choice(num_classes, size=rng.integers(1, 4), replace=False).tolist())
            for _ in range(num_videos)]
  shard = np.repeat(np.arange(6), num_videos // 6)
  names = [f"smoke{i}.tfrecord" for i in range(6)]
  path = os.path.join(directory, packed.PACKED_FILE)
  packed.save_packed(path, features, labels, [f"v{i}" for i in range(num_videos)], shard,
                     names, ["mean_rgb", "mean_audio"], [1024, 128], num_classes,
                     {"train": names[:4], "validation": names[4:5], "test": names[5:]})
  return path


def main(argv):
  del argv
  started = time.time()
  if FLAGS.smoke:
    # Up to 100 s of throughput at the default share (0.2 s a model and precision, plus
    # compiling); the converged rows are bounded by their 3 epochs, not by the clock, so
    # a slow (shared) machine still runs every row.
    FLAGS.budget_s = 400
    FLAGS.max_epochs, FLAGS.neglection_steps, FLAGS.batch_size = 3, 4, 64
    FLAGS.seeds = ["0"]
    scratch = tempfile.mkdtemp(prefix="device_run_smoke_")
    data_path = _smoke_data(scratch)
  else:
    data_path = FLAGS.data
  data = packed.load_packed(data_path)  # before any work: a bad file fails at once
  artifacts.check_output_file(FLAGS.output, "--output")
  results = {"environment": _environment(), "data": {
      "path": data_path, "videos": data.num_videos,
      "splits": {name: len(shards) for name, shards in data.splits.items()}},
      "budget_s": FLAGS.budget_s, "smoke": FLAGS.smoke}
  _write(results)
  # The share is counted from the part's own start: loading the data and writing the
  # smoke shards do not eat into it.
  throughput_deadline = time.time() + FLAGS.throughput_share * FLAGS.budget_s
  results["throughput"] = _throughput(data.features.shape[1], data.num_classes,
                                      throughput_deadline, FLAGS.smoke)
  _write(results)
  _converged(data, results, started + FLAGS.budget_s)
  results["seconds"] = time.time() - started
  _write(results)
  print(f"wrote {FLAGS.output} after {results['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main)
