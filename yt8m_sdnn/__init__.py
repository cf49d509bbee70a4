"""yt8m_sdnn: subclass deep neural networks for large-scale multilabel video classification.

The package follows the pipeline of Gkalelis & Mezaris (MMM 2020):
data (YT8M tf.data reader) -> neglection (θ, eqs. 6-10) -> subclass partitioning and
augmentation (Algorithm 1, eq. 12) -> losses and models (eq. 11) -> metrics (YT8M challenge).

The names below are the pieces a Keras user reuses in a model of their own; none of
them imports TensorFlow, so they work on every Keras 3 backend. The TensorFlow jobs
(`yt8m_sdnn.data.reader`, `yt8m_sdnn.training`, `yt8m_sdnn.subclass.partition`, ...)
are imported from their modules.
"""

__version__ = "0.1.0"

from yt8m_sdnn import startup as _startup  # noqa: E402

if _startup.running_a_binary():
  _startup.import_tensorflow_quietly()

# Importing these also registers the custom Keras objects, so `keras.saving.load_model`
# reads any `.keras` file the package wrote once `yt8m_sdnn` is imported.
# pylint: disable=wrong-import-position
from yt8m_sdnn.losses import (AsymmetricLoss, ClassBalancedCrossEntropy, LossConfig,  # noqa: E402
                              SigmoidCrossEntropy, SubclassCrossEntropy,
                              SummedBinaryFocalCrossentropy, make_loss)
from yt8m_sdnn.models import (MixtureOfExperts, build_model,  # noqa: E402
                              build_subclass_model)
from yt8m_sdnn.neglection import (NeglectionMonitor, NeglectionTrackingModel,  # noqa: E402
                                  attach_neglection_monitor, select_neglected_classes)
from yt8m_sdnn.subclass.in_memory import subclass_training_arrays  # noqa: E402
from yt8m_sdnn.subclass.layout import SubclassLayout  # noqa: E402
from yt8m_sdnn.subclass.merge import SubclassMerge  # noqa: E402

__all__ = [
    "AsymmetricLoss",
    "ClassBalancedCrossEntropy",
    "LossConfig",
    "MixtureOfExperts",
    "NeglectionMonitor",
    "NeglectionTrackingModel",
    "SigmoidCrossEntropy",
    "SubclassCrossEntropy",
    "SubclassLayout",
    "SubclassMerge",
    "SummedBinaryFocalCrossentropy",
    "attach_neglection_monitor",
    "build_model",
    "build_subclass_model",
    "make_loss",
    "select_neglected_classes",
    "subclass_training_arrays",
]
