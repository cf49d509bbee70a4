"""yt8m_sdnn: subclass deep neural networks for large-scale multilabel video classification.

The package follows the pipeline of Gkalelis & Mezaris (MMM 2020):
data (YT8M tf.data reader) -> neglection (θ, eqs. 6-10) -> subclass partitioning and
augmentation (Algorithm 1, eq. 12) -> losses and models (eq. 11) -> metrics (YT8M challenge).
"""

__version__ = "0.1.0"
