"""The neglection score θ (eqs. 6-10): which classes the output layer's gradient neglects.

Pipeline stage between data and subclass partitioning: train the baseline for a while
with a `NeglectionTrackingModel` and a `NeglectionMonitor`, then partition the classes
that `NeglectionMonitor.select()` returns.

  statistics.py: the math (ratios r_i, Gram or direct norms, θ from window sums).
  tracking.py: the training wrapper that accumulates r_i from each training step.
  monitor.py: the callback that closes τ-iteration windows, logs and writes JSON.
  selection.py: the top fraction / top k classes by θ (eq. 10).

Example:
  wrapper, monitor = attach_neglection_monitor(build_cnn(1152, 3862), tau=500)
  wrapper.compile(optimizer="sgd", loss="binary_crossentropy")
  wrapper.fit(dataset, steps_per_epoch=500, callbacks=[monitor])
  monitor.write_json("train_dir/neglection.json")
"""

from yt8m_sdnn.neglection.monitor import (DEFAULT_TOP_FRACTION, NeglectionMonitor,
                                          attach_neglection_monitor, rescored)
from yt8m_sdnn.neglection.selection import num_selected_classes, select_neglected_classes
from yt8m_sdnn.neglection.statistics import (DEFAULT_EPSILON, METHODS, NO_POSITIVE_MODES,
                                             choose_method, gradient_part_norms,
                                             minibatch_neglection_ratios,
                                             neglection_ratios, neglection_scores)
from yt8m_sdnn.neglection.tracking import (NeglectionState, NeglectionTrackingModel,
                                           find_output_layer)

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_TOP_FRACTION",
    "METHODS",
    "NO_POSITIVE_MODES",
    "NeglectionMonitor",
    "NeglectionState",
    "NeglectionTrackingModel",
    "attach_neglection_monitor",
    "choose_method",
    "find_output_layer",
    "gradient_part_norms",
    "minibatch_neglection_ratios",
    "neglection_ratios",
    "neglection_scores",
    "num_selected_classes",
    "rescored",
    "select_neglected_classes",
]
