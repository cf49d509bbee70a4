"""The training losses by name: one place that turns `--loss=NAME` into a Keras loss.

Adding a loss is one entry of `LOSSES`: its baseline builder (one unit per class) and
the focusing it gives the subclass cross-entropy, plus its hyperparameters in
`LossConfig`. Every name works for the baseline (one unit per class) and, through the subclass
cross-entropy's focusing and class-balanced video weights, for the subclass network
(eq. 11), so "SDNN combined with focal" is `--subclass_plan=PLAN --loss=focal`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import keras
import numpy as np

from yt8m_sdnn.losses import cross_entropy, reweighted


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One loss: its baseline builder and its focusing of eq. (11)'s terms."""
  # (config, from_logits, class_weights or None) -> the one-unit-per-class loss.
  build: Callable[["LossConfig", bool, np.ndarray | None], keras.losses.Loss]
  # config -> keyword arguments of `SubclassCrossEntropy` (γ+, γ-, clip).
  focusing: Callable[["LossConfig"], dict] = lambda config: {}
  needs_class_counts: bool = False


LOSSES = {
    "cross_entropy": _Entry(
        lambda config, from_logits, weights: cross_entropy.SigmoidCrossEntropy(
            from_logits=from_logits)),
    "focal": _Entry(
        lambda config, from_logits, weights: reweighted.SummedBinaryFocalCrossentropy(
            gamma=config.focal_gamma, from_logits=from_logits),
        lambda config: dict(gamma_positive=config.focal_gamma,
                            gamma_negative=config.focal_gamma)),
    "asymmetric": _Entry(
        lambda config, from_logits, weights: reweighted.AsymmetricLoss(
            config.asl_gamma_positive, config.asl_gamma_negative, config.asl_clip,
            from_logits=from_logits),
        lambda config: dict(gamma_positive=config.asl_gamma_positive,
                            gamma_negative=config.asl_gamma_negative, clip=config.asl_clip)),
    "class_balanced": _Entry(
        lambda config, from_logits, weights: reweighted.ClassBalancedCrossEntropy(
            weights.tolist(), from_logits=from_logits),
        needs_class_counts=True),
}
LOSS_NAMES = tuple(LOSSES)


# The range [low, high) of each hyperparameter of `LossConfig` (high None: unbounded).
_RANGES = {
    "focal_gamma": (0.0, None),         # γ ≥ 0: γ < 0 weighs easy examples up
    "asl_gamma_positive": (0.0, None),
    "asl_gamma_negative": (0.0, None),
    "asl_clip": (0.0, 1.0),              # a probability shift
    "class_balance_beta": (0.0, 1.0),    # 1 - β^n > 0 needs β < 1
}


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Which loss, with its hyperparameters.

  Attributes:
    name: one of `LOSS_NAMES`: "cross_entropy" (eq. 3), "focal" (Keras'
      `BinaryFocalCrossentropy`, summed over classes), "asymmetric" (ASL),
      "class_balanced" (Cui et al.: each video's loss weighted by the mean
      class-balanced weight of its positive classes; needs the training class
      counts).
    focal_gamma: γ of the focal loss.
    asl_gamma_positive: γ+ of ASL.
    asl_gamma_negative: γ- of ASL.
    asl_clip: m, ASL's probability shift of negatives.
    class_balance_beta: β of the effective number of samples.

  Raises:
    ValueError: an unknown name, or a hyperparameter out of its range (γs ≥ 0,
      clip and β in [0, 1)), naming its flag.
  """
  name: str = "cross_entropy"
  focal_gamma: float = 2.0
  asl_gamma_positive: float = 0.0
  asl_gamma_negative: float = 4.0
  asl_clip: float = 0.05
  class_balance_beta: float = 0.999

  def __post_init__(self):
    if self.name not in LOSS_NAMES:
      raise ValueError(f"Expected one of {list(LOSS_NAMES)}. Received: loss={self.name!r}")
    # Every hyperparameter, whichever loss is named: a value no loss could use is a
    # mistake even where it goes unused. The flags carry the same names.
    for name, (low, high) in _RANGES.items():
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          math.isfinite(value) and low <= value and (high is None or value < high)):
        expected = f"{name} >= {low:g}" if high is None else f"{low:g} <= {name} < {high:g}"
        raise ValueError(f"Expected {expected}. Received: --{name}={value!r}")

  @property
  def needs_class_counts(self) -> bool:
    return LOSSES[self.name].needs_class_counts


def _check_counts(config: LossConfig, class_counts, num_classes: int) -> np.ndarray:
  if class_counts is None:
    raise ValueError(f"loss={config.name!r} needs the training class counts "
                     "(data.class_counts.count_class_positives)")
  counts = np.asarray(class_counts)
  if counts.shape != (num_classes,):
    raise ValueError(f"Expected {num_classes} class counts. Received shape {counts.shape}")
  return counts


def make_loss(config: LossConfig, num_classes: int, from_logits: bool = False,
              class_counts: Sequence[int] | np.ndarray | None = None,
              unit_to_class: Sequence[int] | None = None) -> keras.losses.Loss:
  """The Keras loss `config` names.

  Args:
    config: the loss and its hyperparameters.
    num_classes: number of classes.
    from_logits: whether the model outputs logits (the baseline outputs probabilities).
    class_counts: training positives per class; required by "class_balanced".
    unit_to_class: for a subclass network, the class of every output unit: the loss
      is then the subclass cross-entropy (eq. 11) with the named loss's focusing on
      its terms or, for "class_balanced", its weight on each video's loss.

  Raises:
    ValueError: class counts missing or of the wrong length.

  Example:
    loss = make_loss(LossConfig("asymmetric"), num_classes=3862)
  """
  entry = LOSSES[config.name]
  class_weights = None
  if entry.needs_class_counts:
    class_weights = reweighted.class_balanced_weights(
        _check_counts(config, class_counts, num_classes), config.class_balance_beta)
  if unit_to_class is not None:
    return cross_entropy.SubclassCrossEntropy(
        unit_to_class, from_logits=from_logits, **entry.focusing(config),
        class_weights=None if class_weights is None else class_weights.tolist())
  return entry.build(config, from_logits, class_weights)
