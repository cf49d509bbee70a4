"""The losses: eq. (3), eq. (11), the reweighted alternatives and the registry by name.

  terms.py: the stable binary terms (softplus, focal/ASL-weighted -ln p, -ln(1 - p)).
  cross_entropy.py: the sigmoid cross-entropy (eq. 3) and the subclass cross-entropy
    (eq. 11), with optional focusing and class-balanced video weights.
  reweighted.py: focal, asymmetric (ASL) and class-balanced losses for the baseline.
  registry.py: `--loss=NAME` → a Keras loss (`LOSSES`, one entry per loss).
"""

from yt8m_sdnn.losses.cross_entropy import (Reweighting, SigmoidCrossEntropy,
                                            SubclassCrossEntropy, class_labels_per_unit,
                                            subclass_cross_entropy)
from yt8m_sdnn.losses.registry import LOSS_NAMES, LOSSES, LossConfig, make_loss
from yt8m_sdnn.losses.reweighted import (AsymmetricLoss, ClassBalancedCrossEntropy,
                                         SummedBinaryFocalCrossentropy, asymmetric_loss,
                                         class_balanced_cross_entropy,
                                         class_balanced_sample_weights,
                                         class_balanced_weights)

__all__ = [
    "AsymmetricLoss",
    "ClassBalancedCrossEntropy",
    "LOSSES",
    "LOSS_NAMES",
    "LossConfig",
    "Reweighting",
    "SigmoidCrossEntropy",
    "SubclassCrossEntropy",
    "SummedBinaryFocalCrossentropy",
    "asymmetric_loss",
    "class_balanced_cross_entropy",
    "class_balanced_sample_weights",
    "class_balanced_weights",
    "class_labels_per_unit",
    "make_loss",
    "subclass_cross_entropy",
]
