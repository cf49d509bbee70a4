"""Subclasses of the neglected classes: layout, Algorithm 1's partition, plan, augmentation.

`subclass_training_arrays` (from `in_memory`) turns numpy arrays and the neglected
classes into the subclass training set and its `SubclassLayout`, for a Keras model of
one's own; like the layout and `SubclassMerge` it imports without TensorFlow.
"""

from yt8m_sdnn.subclass.in_memory import SubclassTrainingArrays, subclass_training_arrays

__all__ = ["SubclassTrainingArrays", "subclass_training_arrays"]
