"""yt8m_sdnn: subclass deep neural networks for large-scale multilabel video classification.

The package follows the pipeline of Gkalelis & Mezaris (MMM 2020):
data (YT8M tf.data reader) -> neglection (θ, eqs. 6-10) -> subclass partitioning and
augmentation (Algorithm 1, eq. 12) -> losses and models (eq. 11) -> metrics (YT8M challenge).
"""

__version__ = "0.1.0"

# Registers the custom Keras objects, so `keras.saving.load_model` can read any
# `.keras` file the package wrote once `yt8m_sdnn` is imported.
from yt8m_sdnn import losses as _losses  # noqa: E402,F401  pylint: disable=wrong-import-position
from yt8m_sdnn import models as _models  # noqa: E402,F401  pylint: disable=wrong-import-position
from yt8m_sdnn.subclass import merge as _merge  # noqa: E402,F401  pylint: disable=wrong-import-position
