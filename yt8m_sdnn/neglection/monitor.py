"""`NeglectionMonitor`: closes a θ window every τ iterations, keeps history, logs, writes JSON.

The callback reads the accumulators of a `NeglectionTrackingModel` (the model being
fit) after every execution of the train function: one scalar, the minibatch counter
(exact under any strategy or partial last execution; the read waits for the step to
finish, which `steps_per_execution` amortizes on an accelerator). Once τ iterations have
accumulated it reads the per-class sums, computes θ (eq. 9, `neglection_scores`),
appends it to `history`, writes a histogram and a few scalars to TensorBoard when
`log_dir` is given, and zeroes the accumulators for the next window. Per-class vectors
never travel through `logs`, which Keras averages and prints.

steps_per_execution: with `compile(steps_per_execution=k)`, `on_train_batch_end`
fires once per k steps, so a window closes at the first call where at least τ
iterations have accumulated and θ averages over all of them (its `num_iterations`,
recorded with it, may exceed τ by up to k - 1). A window still open when `fit`
returns stays in the accumulators: the next `fit` continues it, and `flush()` closes
it early.

Scores: θ (eq. 9, `theta`) is always computed; `score` names the score that ranks
the classes for `select()` (`scores.TRACKED_SCORES`, default the paper's θ), whose
values are `score_values`. Every window keeps its raw sums, so any tracked score of
any window (or of several windows together) can be recomputed afterwards.

JSON (`to_dict`, `write_json`): `theta` (one number per class, null where NaN),
`score` and `score_values` (the ranking score and its values, equal to `theta` for
`paper`), `selected` (class ids, most neglected first, by `score_values`), `tau`,
`num_iterations` (iterations averaged in `theta`), `end_iteration`, `no_positive`,
`top_fraction` and `top_k_classes` (how many classes `selected` holds: a share, or a
count that replaces it; the other is null), `positive_minibatches` (per class, the
minibatches of the latest window with a positive) and `history` (every window's
`end_iteration`, `num_iterations`, `theta`, `score_values` and its sums,
`scores.SUM_KEYS`). With the sums in the file, `rescored` turns a payload ranked by one
tracked score into the payload of another, with no second training run.

Why a wrapper and not the callback alone: `model.fit(callbacks=[NeglectionMonitor(...)])`
on a plain Keras model cannot work in Keras 3, so fitting one raises a `TypeError`
that says what to write instead (`attach_neglection_monitor`). θ needs the output
layer's input h of every training step, which neither the step's logs nor any other
callback hook carries, and the accumulators must be state of the model being fit:
`fit` builds the train function from the model's own `train_step` (its `call` and
`compute_loss`) before the first callback hook (`on_train_begin`) runs, and keeps it
across fits; on JAX the compiled step is stateless and carries only the variables the
model tracked when it was built, and a built Keras 3 layer refuses new variables ("You
cannot add new elements of state ... to a layer that is already built"). Doing it in
place would mean patching the user's model's methods and state behind their back, for
this fit only, on every backend. The wrapper instead shares every layer and weight of
the model, so training it trains the model (`wrapper.model` is the model, saved as
usual), and the callback only reads it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras
import numpy as np
from absl import logging

from yt8m_sdnn import artifacts
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection.selection import select_neglected_classes
from yt8m_sdnn.neglection.statistics import DEFAULT_EPSILON, check_no_positive
from yt8m_sdnn.neglection.tracking import NeglectionTrackingModel

# The paper selects 10% of the YouTube-8M classes (section 3.3) and CIFAR-100's.
DEFAULT_TOP_FRACTION = 0.1
# The per-class sums a window keeps (and a backup holds) besides its counts.
_WINDOW_SUMS = ("ratio_sums", "null_ratio_sums", "positive_minibatches", "positive_counts")


def _json_floats(values: np.ndarray) -> list[Optional[float]]:
  """Floats for JSON, NaN as None (JSON has no NaN)."""
  return [None if math.isnan(value) else float(value) for value in np.asarray(values).tolist()]


def _json_sums(window: dict[str, Any]) -> dict[str, Any]:
  """A window's sums (`scores.SUM_KEYS`) for JSON: per-class lists, the scalar count."""
  return {key: (float(window[key]) if np.ndim(window[key]) == 0
                else _json_floats(window[key])) for key in scores_lib.SUM_KEYS}


def rescored(payload: dict[str, Any], score: str) -> dict[str, Any]:
  """`payload` (`NeglectionMonitor.to_dict`) as a monitor ranking by `score` would write it.

  Every window's `score_values` are recomputed from its sums, and `selected` from the
  latest window's, with the payload's `top_fraction` or `top_k_classes` and
  `no_positive`; θ and the sums are unchanged. The tracked scores read the same sums,
  so one training run serves every score (the run does not depend on the score).

  Raises:
    ValueError: `score` is not a tracked score, or a window has no sums (a file
      written before the sums were kept).
  """
  scores_lib.check_score(score, scores_lib.TRACKED_SCORES)
  history = payload.get("history") or []
  missing = [w.get("end_iteration") for w in history
             if not all(key in w for key in scores_lib.SUM_KEYS)]
  if not history or missing:
    raise ValueError(
        f"neglection_score={score!r}: the windows ending at iterations {missing} have no "
        f"sums {list(scores_lib.SUM_KEYS)} to recompute it from; measure θ again")
  no_positive = payload.get("no_positive", "skip")
  windows = []
  for window in history:
    sums = {key: np.asarray(window[key], np.float64) for key in scores_lib.SUM_KEYS}
    values = scores_lib.tracked_scores(score, sums, no_positive=no_positive)
    windows.append(dict(window, score_values=_json_floats(values)))
  latest = np.array([np.nan if v is None else v for v in windows[-1]["score_values"]],
                    np.float64)
  top_k = payload.get("top_k_classes")
  selected = select_neglected_classes(
      latest, top_fraction=None if top_k else payload.get("top_fraction"), top_k_classes=top_k)
  return dict(payload, score=score, score_values=windows[-1]["score_values"],
              selected=selected.tolist(), history=windows)


class NeglectionMonitor(keras.callbacks.Callback):
  """Computes θ (eq. 9) every τ training iterations of a `NeglectionTrackingModel`.

  Fit the wrapper, not the plain model: `attach_neglection_monitor(model, tau=...)`
  returns both, for any Keras model whose output is a sigmoid `Dense`, or a `Dense`
  followed by `Activation("sigmoid")` (found without a name). Fitting a plain model
  with the monitor raises a `TypeError` that shows those lines; the module docstring
  says why a callback cannot do it alone.

  Args:
    tau: τ, iterations per window (≥ 1).
    no_positive: "skip" (default) averages r_i over the minibatches with a positive
      of class i; "include" over all of them. See `statistics.py`.
    top_fraction: default share of classes for `select()` and the JSON's `selected`
      (floor, see `selection.py`); the paper's 10% unless `top_k_classes` is given.
    top_k_classes: default number of classes for `select()`; when given it replaces
      `top_fraction`.
    log_dir: TensorBoard directory for the θ histogram and scalars; None writes none.
    score: the score `select()` ranks by, one of `scores.TRACKED_SCORES`.

  Raises:
    ValueError: for tau < 1, an unknown `no_positive` or `score`, or a
      `top_fraction` outside (0, 1] or negative `top_k_classes`.
    TypeError: from `fit`, when the model being fit is not a `NeglectionTrackingModel`.

  Example:
    wrapper, monitor = attach_neglection_monitor(build_cnn(1152, 3862), tau=500)
    wrapper.compile(optimizer="sgd", loss="binary_crossentropy")
    wrapper.fit(dataset, steps_per_epoch=500, callbacks=[monitor])
    neglected = monitor.select()  # 386 class ids, most neglected first.
    monitor.write_json(os.path.join(train_dir, "neglection.json"))
  """

  def __init__(self, tau: int, no_positive: str = "skip",
               top_fraction: Optional[float] = DEFAULT_TOP_FRACTION,
               top_k_classes: Optional[int] = None, log_dir: Optional[str] = None,
               score: str = scores_lib.DEFAULT_SCORE):
    super().__init__()
    self.score = scores_lib.check_score(score, scores_lib.TRACKED_SCORES)
    if int(tau) != tau or tau < 1:
      raise ValueError(f"Expected an integer tau >= 1. Received: tau={tau!r}")
    if top_k_classes is not None:
      top_fraction = None
    if top_k_classes is None and (top_fraction is None or not 0.0 < top_fraction <= 1.0):
      raise ValueError(f"Expected 0 < top_fraction <= 1. Received: top_fraction={top_fraction}")
    if top_k_classes is not None and top_k_classes < 0:
      raise ValueError(f"Expected top_k_classes >= 0. Received: top_k_classes={top_k_classes}")
    self.tau = int(tau)
    self.no_positive = check_no_positive(no_positive)
    self.top_fraction = top_fraction
    self.top_k_classes = top_k_classes
    self.log_dir = log_dir
    self.history: list[dict[str, Any]] = []
    self._started = False
    self._end_iteration = 0
    self._writer = None

  def _tracking_model(self) -> NeglectionTrackingModel:
    if not isinstance(self.model, NeglectionTrackingModel):
      name = getattr(self.model, "name", None)
      raise TypeError(
          "NeglectionMonitor reads θ from a NeglectionTrackingModel, the training wrapper "
          f"that sees each step's output layer; model {name!r} "
          f"({type(self.model).__name__}) was fit directly. Wrap it (it shares the "
          "model's layers and weights, so the model trains in place) and fit the "
          "wrapper:\n"
          f"    wrapper, monitor = attach_neglection_monitor(model, tau={self.tau})\n"
          "    wrapper.compile(optimizer=..., loss=...)\n"
          "    wrapper.fit(x, y, callbacks=[monitor])\n"
          "    neglected = monitor.select()  # then save `model` as usual\n"
          "The output layer is found automatically (a sigmoid Dense, or a Dense followed "
          "by Activation(\"sigmoid\"), whose output is the model's output) or named by "
          "output_layer=. A callback alone cannot add the "
          "tracking to a plain model in Keras 3 (see the neglection.monitor module "
          "docstring).")
    return self.model

  def on_train_begin(self, logs=None):
    model = self._tracking_model()
    if not self._started:
      # A monitor counts from its first fit; later fits continue the open window.
      model.reset_neglection_state()
      self._started = True
    if self.log_dir is not None and self._writer is None:
      # TensorBoard summaries need TensorFlow; without `log_dir` the monitor runs on
      # any Keras backend.
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      self._writer = tf.summary.create_file_writer(self.log_dir)

  def on_train_batch_end(self, batch, logs=None):
    if self.model.read_num_iterations() >= self.tau:
      self._close_window()

  def on_train_end(self, logs=None):
    pending = self.model.read_num_iterations()
    if pending:
      logging.info("Neglection window open with %d of tau=%d iterations; the next fit "
                   "continues it, flush() closes it now.", pending, self.tau)
    if self._writer is not None:
      self._writer.flush()

  def flush(self) -> bool:
    """Closes the open window early when it holds ≥ 1 iteration; returns whether it did."""
    if self._tracking_model().read_num_iterations() == 0:
      return False
    self._close_window()
    if self._writer is not None:
      self._writer.flush()
    return True

  def backup_state(self) -> dict[str, Any]:
    """What a crash backup must hold for a resumed run to give the same θ.

    The open window's accumulators are variables of the wrapper, saved with its
    weights; the closed windows and the iteration count live here.
    """
    return {"end_iteration": self._end_iteration, "history": [{
        "end_iteration": window["end_iteration"],
        "num_iterations": window["num_iterations"],
        "num_minibatches": window["num_minibatches"],
        **{key: [float(v) for v in window[key]] for key in _WINDOW_SUMS},
    } for window in self.history]}

  def restore_backup_state(self, state: dict[str, Any]) -> None:
    """Takes back `backup_state()`; the open window continues from the restored weights."""
    self._end_iteration = int(state["end_iteration"])
    self.history = [self._window(
        int(window["end_iteration"]), int(window["num_iterations"]),
        float(window["num_minibatches"]),
        **{key: np.asarray(window[key], np.float64) for key in _WINDOW_SUMS})
                    for window in state["history"]]
    # The accumulators were restored with the weights: the first fit must not zero them.
    self._started = True

  def _close_window(self) -> None:
    state = self.model.read_neglection_state()
    num_iterations = state.num_iterations
    self._end_iteration += num_iterations
    window = self._window(self._end_iteration, num_iterations, state.num_minibatches,
                          ratio_sums=state.ratio_sums, null_ratio_sums=state.null_ratio_sums,
                          positive_minibatches=state.positive_minibatches,
                          positive_counts=state.positive_counts)
    self.history.append(window)
    theta = window["theta"]
    self.model.reset_neglection_state()
    scored = theta[~np.isnan(theta)]
    if scored.size:
      most_neglected = int(np.nanargmax(theta))
      logging.info("Neglection window ending at iteration %d (%d iterations): %d of %d "
                   "classes scored, max theta %.4f (class %d), mean %.4f.",
                   self._end_iteration, num_iterations, scored.size, theta.size,
                   theta[most_neglected], most_neglected, scored.mean())
    else:
      logging.info("Neglection window ending at iteration %d (%d iterations): no class "
                   "was seen positive.", self._end_iteration, num_iterations)
    if self._writer is not None:
      self._write_summaries(theta, scored)

  def _window(self, end_iteration: int, num_iterations: int, num_minibatches: float,
              **sums: np.ndarray) -> dict[str, Any]:
    """One closed window: its sums (`_WINDOW_SUMS`), θ (eq. 9) and the score's values."""
    window = dict(sums, end_iteration=end_iteration, num_iterations=num_iterations,
                  num_minibatches=num_minibatches)

    def values(score: str) -> np.ndarray:
      return scores_lib.tracked_scores(score, window, no_positive=self.no_positive)
    theta = values("paper")
    return {**window, "theta": theta,
            "score_values": theta if self.score == "paper" else values(self.score)}

  def _write_summaries(self, theta: np.ndarray, scored: np.ndarray) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  # see on_train_begin
    with self._writer.as_default(step=self._end_iteration):
      tf.summary.scalar("neglection/scored_classes", scored.size)
      if scored.size:
        tf.summary.histogram("neglection/theta", scored)
        tf.summary.scalar("neglection/theta_max", scored.max())
        tf.summary.scalar("neglection/theta_mean", scored.mean())
        tf.summary.scalar("neglection/theta_median", np.median(scored))

  @property
  def theta(self) -> Optional[np.ndarray]:
    """θ of the latest closed window, (c,) float64 with NaN for unscored classes, or None."""
    return self.history[-1]["theta"] if self.history else None

  @property
  def num_iterations(self) -> int:
    """Iterations averaged in `theta` (0 before the first window closes)."""
    return self.history[-1]["num_iterations"] if self.history else 0

  def _latest(self) -> dict[str, Any]:
    if not self.history:
      raise ValueError(
          f"no neglection window has closed yet (tau={self.tau} iterations); train "
          "longer or call flush() to close the open window")
    return self.history[-1]

  def select(self, top_fraction: Optional[float] = None,
             top_k_classes: Optional[int] = None) -> np.ndarray:
    """The most neglected classes of the latest window (eq. 10), most neglected first.

    Without arguments uses the monitor's `top_fraction` or `top_k_classes`.

    Raises:
      ValueError: before the first window closes, or when both arguments are given.
    """
    theta = self._latest()["score_values"]
    if top_fraction is None and top_k_classes is None:
      top_fraction, top_k_classes = self.top_fraction, self.top_k_classes
    return select_neglected_classes(theta, top_fraction=top_fraction, top_k_classes=top_k_classes)

  def to_dict(self) -> dict[str, Any]:
    """The JSON payload described in the module docstring.

    Raises:
      ValueError: before the first window closes.
    """
    latest = self._latest()
    return {
        "theta": _json_floats(latest["theta"]),
        "score": self.score,
        "score_values": _json_floats(latest["score_values"]),
        "selected": self.select().tolist(),
        "tau": self.tau,
        "num_iterations": latest["num_iterations"],
        "end_iteration": latest["end_iteration"],
        "no_positive": self.no_positive,
        "top_fraction": self.top_fraction,
        "top_k_classes": self.top_k_classes,
        "positive_minibatches": [int(count) for count in latest["positive_minibatches"]],
        "history": [dict({
            "end_iteration": window["end_iteration"],
            "num_iterations": window["num_iterations"],
            "theta": _json_floats(window["theta"]),
            "score_values": _json_floats(window["score_values"]),
        }, **_json_sums(window)) for window in self.history],
    }

  def write_json(self, path: str) -> None:
    """Writes `to_dict()` to `path` atomically (`artifacts.write_json`)."""
    artifacts.write_json(path, self.to_dict())


def attach_neglection_monitor(
    model: keras.Model, tau: int, *, no_positive: str = "skip",
    top_fraction: Optional[float] = DEFAULT_TOP_FRACTION, top_k_classes: Optional[int] = None,
    log_dir: Optional[str] = None, score: str = scores_lib.DEFAULT_SCORE,
    output_layer: str | keras.layers.Layer | None = None,
    outputs_are_logits: bool = False, include_bias: bool = False, method: str = "auto",
    epsilon: float = DEFAULT_EPSILON) -> tuple[NeglectionTrackingModel, NeglectionMonitor]:
  """Wraps `model` for θ tracking and makes the callback that reads it.

  The documented way to measure θ on any Keras model, the package's or one's own:
  the wrapper shares the model's layers and weights, so fitting the wrapper trains
  the model itself.

  Args:
    model: the model to train: functional or sequential, one output, the output of a
      sigmoid `Dense`, of `keras.layers.Activation("sigmoid")` right after a `Dense`
      without activation (as under mixed precision), or of a layer declaring
      `neglection_outputs`; see `tracking.find_output_layer`.
    tau, no_positive, top_fraction, top_k_classes, log_dir, score: see `NeglectionMonitor`.
    output_layer: that output layer, by name or as the layer (of a Dense followed by
      a sigmoid Activation, either one); None (default) finds it
      (`tracking.find_output_layer`: the layer named "predictions" if any, else the
      layer whose output is the model's output).
    outputs_are_logits, include_bias, method, epsilon: see `NeglectionTrackingModel`.

  Returns:
    (wrapper, monitor): compile and fit `wrapper` with `monitor` among the callbacks;
    `wrapper.model` is `model`: save it, not the wrapper.

  Raises:
    ValueError: see `NeglectionMonitor` and `tracking.find_output_layer` (no usable
      output layer found: the error lists the model's sigmoid Dense layers).

  Example:
    model = keras.Sequential([keras.Input((1152,)), keras.layers.Dense(256, "relu"),
                              keras.layers.Dense(3862, "sigmoid")])
    wrapper, monitor = attach_neglection_monitor(model, tau=200)
    wrapper.compile(optimizer=keras.optimizers.SGD(1e-3), loss="binary_crossentropy")
    wrapper.fit(dataset, steps_per_epoch=200, callbacks=[monitor])
    monitor.write_json("train_dir/neglection.json")
    model.save("model.keras")
  """
  monitor = NeglectionMonitor(tau, no_positive=no_positive, top_fraction=top_fraction,
                              top_k_classes=top_k_classes, log_dir=log_dir, score=score)
  wrapper = NeglectionTrackingModel(
      model, output_layer=output_layer, outputs_are_logits=outputs_are_logits,
      include_bias=include_bias, method=method, epsilon=epsilon)
  return wrapper, monitor
